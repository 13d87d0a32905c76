#include "lockstep/worker/chip_runner.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/control/settings.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"
#include "lockstep/transport/transport.h"

namespace lockstep::worker {

using control::ChipProgress;
using control::FlightEntry;
using control::Step;

namespace {

partition::ModelSpec Tiny() {
  return partition::ParseModelSpec(R"({"_name_or_path": "tiny", "model_type": "llama",
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 32})",
                                   "tiny");
}

struct TwoChips {
  partition::ModelSpec spec = Tiny();
  topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  partition::Plan plan;
  schedule::GlobalSchedule schedule;
  model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 3);

  explicit TwoChips(std::vector<std::pair<int64_t, int>> layout = {{2, 1}, {2, 1}},
                    int64_t sequences = 2) {
    partition::PlanOptions po;
    po.layout = std::move(layout);
    plan = partition::MakePlan(spec, topo, po);
    schedule::ScheduleOptions so;
    so.tokens = 1;
    so.sequences = sequences;
    schedule = schedule::Compile(plan, spec, topo, so);
  }

  ChipSetup Setup(size_t i, uint64_t schedule_id) const {
    const schedule::ChipProgram& p = schedule.programs.at(i);
    ChipSetup s;
    s.spec = spec;
    s.stage = p.stage;
    s.rank = p.rank;
    s.program = p;
    s.shard = model::ExtractShard(weights, spec, model::StagesFromPlan(plan), p.stage, p.rank);
    s.group = plan.stages[static_cast<size_t>(p.stage)].chips;
    s.incoming = schedule::IncomingTables(schedule, p.chip);
    s.schedule_id = schedule_id;
    s.timeout = transport::Millis(5000);
    return s;
  }

  // Chip i's runner over `transport` (opening waits for the peer: call from a thread per chip).
  std::unique_ptr<ChipRunner> Open(transport::Transport& transport, size_t i, uint64_t schedule_id,
                                   FlightRecorder* recorder = nullptr) const {
    ChipSetup setup = Setup(i, schedule_id);
    setup.recorder = recorder;
    const auto links = schedule::ProgramLinks(setup.program);
    return std::make_unique<ChipRunner>(
        std::move(setup),
        transport.OpenChip(static_cast<uint32_t>(schedule.programs[i].chip),
                           control::LinkSpecs(topo, links), transport::Millis(5000)));
  }
};

// A chip given another schedule's messages stops with an Error naming itself, the instruction,
// the link and the step; its peer then sees the link close instead of hanging.
TEST(ChipRunner, WrongScheduleIsNamed) {
  const TwoChips t;
  ASSERT_EQ(t.schedule.programs.size(), 2u);
  auto transport = transport::CreateTransport({});
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      auto runner = t.Open(*transport, i, i == 0 ? 1 : 2);  // the two chips disagree
      Step step;
      step.work.push_back({0, 7, 0, {1, 2, 3}, true, {}, 0});
      try {
        runner->RunStep(step);
      } catch (const Error& e) {
        errors[i] = e.what();
      }
      runner->Close();
    });
  }
  for (std::thread& th : threads) th.join();
  // Stage 1 (chip 1) receives stage 0's activation stamped with schedule 1 while it runs 2.
  EXPECT_NE(errors[1].find("chip 1 step 0 instruction"), std::string::npos) << errors[1];
  EXPECT_NE(errors[1].find("activation recv"), std::string::npos) << errors[1];
  EXPECT_NE(errors[1].find("link chip"), std::string::npos) << errors[1];
  EXPECT_NE(errors[1].find("schedule 1"), std::string::npos) << errors[1];
  EXPECT_FALSE(errors[0].empty());  // stage 0 waits for the token and sees the link close
}

// The sampled token a last stage sends back is not read until the next Step, so the first stage
// does not wait for it where the schedule put it: it sends every sequence's activation before it
// waits for any token. Stage 1 (the head alone) starts only once stage 0 (the embedding and both
// layers) waits on a link; stage 0 must by then have sent all three sequences' activations
// (before, it waited for sequence 0's token between them, where the schedule has it arrive),
// and the step still completes, every token taken off the link.
TEST(ChipRunner, TheFirstStageRunsAheadOfTheTokensComingBack) {
  const TwoChips t({{3, 1}, {1, 1}}, 3);
  ASSERT_EQ(t.schedule.programs.size(), 2u);
  const std::vector<schedule::Instruction>& program = t.schedule.programs[0].instructions;
  size_t last_send = 0, first_token = program.size();
  for (size_t i = 0; i < program.size(); ++i) {
    if (program[i].kind == schedule::InstrKind::kSend) last_send = i;
    if (program[i].kind == schedule::InstrKind::kRecv) first_token = std::min(first_token, i);
  }
  ASSERT_LT(first_token, last_send) << "the schedule no longer has a token arrive mid-step";
  auto transport = transport::CreateTransport({});
  FlightRecorder recorder(256);
  std::vector<std::unique_ptr<ChipRunner>> runners(2);
  std::vector<std::thread> opening;
  for (size_t i = 0; i < 2; ++i) {
    opening.emplace_back(
        [&, i] { runners[i] = t.Open(*transport, i, 1, i == 0 ? &recorder : nullptr); });
  }
  for (std::thread& th : opening) th.join();
  Step step;
  for (int32_t slot = 0; slot < 3; ++slot) {
    step.work.push_back({slot, static_cast<uint64_t>(slot), 0, {1 + slot, 2}, true, {}, 0});
  }
  std::vector<std::string> errors(2);
  std::vector<size_t> results(2);
  auto run = [&](size_t i) {
    try {
      results[i] = runners[i]->RunStep(step).size();
    } catch (const Error& e) {
      errors[i] = e.what();
    }
  };
  std::thread first(run, 0);
  // Wait until stage 0 blocks on a link (or ends).
  bool waiting = false;
  for (int spin = 0; spin < 5000 && !waiting; ++spin) {
    const ChipProgress p = recorder.Progress();
    waiting = p.running && p.current.op >= 0 && p.current.kind == schedule::InstrKind::kRecv;
    if (!p.running && p.last_completed_step == 0) break;
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(waiting);
  int sends = 0;
  for (const FlightEntry& e : recorder.Entries()) sends += e.kind == schedule::InstrKind::kSend;
  EXPECT_EQ(sends, 3) << "stage 0 waited for a token before it had sent every activation";
  std::thread second(run, 1);
  first.join();
  second.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(results[1], 3u);  // stage 1 sampled every sequence
  int received = 0;
  for (const FlightEntry& e : recorder.Entries()) received += e.kind == schedule::InstrKind::kRecv;
  EXPECT_EQ(received, 3);  // every token taken off the link
  for (auto& r : runners) r->Close();
}

// Rank 0 of a TP 2 stage runs its first step while the test plays rank 1 and sends, as the
// embedding's one-shot all-reduce message, `per_output` values per output named as coming from
// `src_rank`. Returns the Error rank 0 stops with ("" if none).
std::string FirstAllReduceFailure(int64_t per_output, int32_t src_rank) {
  const partition::ModelSpec spec = Tiny();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = {{4, 2}};
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  schedule::ScheduleOptions so;
  so.tokens = 1;
  so.sequences = 1;
  const schedule::GlobalSchedule schedule = schedule::Compile(plan, spec, topo, so);
  const schedule::ChipProgram& mine = schedule.programs.at(0);
  const schedule::ChipProgram& peer = schedule.programs.at(1);
  const schedule::Instruction* first = nullptr;  // the embedding's one-shot receive
  for (const schedule::Instruction& in : mine.instructions) {
    if (in.kind == schedule::InstrKind::kRecv && in.tag == schedule::Tag::kAllReduce) {
      first = &in;
      break;
    }
  }
  EXPECT_NE(first, nullptr);
  if (first == nullptr) return "no all-reduce";
  EXPECT_EQ(first->layer, -1);

  auto transport = transport::CreateTransport({});
  const std::vector<topology::LinkId> peer_links = schedule::ProgramLinks(peer);
  std::vector<std::unique_ptr<transport::Endpoint>> peer_ends;
  std::thread opener([&] {
    peer_ends = transport->OpenChip(static_cast<uint32_t>(peer.chip),
                                    control::LinkSpecs(topo, peer_links), transport::Millis(5000));
  });
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 3);
  ChipSetup setup;
  setup.spec = spec;
  setup.stage = 0;
  setup.rank = 0;
  setup.program = mine;
  setup.shard = model::ExtractShard(weights, spec, model::StagesFromPlan(plan), 0, 0);
  setup.group = plan.stages[0].chips;
  setup.incoming = schedule::IncomingTables(schedule, mine.chip);
  setup.schedule_id = 1;
  setup.timeout = transport::Millis(5000);
  ChipRunner runner(std::move(setup),
                    transport->OpenChip(static_cast<uint32_t>(mine.chip),
                                        control::LinkSpecs(topo, schedule::ProgramLinks(mine)),
                                        transport::Millis(5000)));
  opener.join();
  for (size_t i = 0; i < peer_links.size(); ++i) {
    if (peer_links[i] != first->in_link) continue;
    transport::Message m;
    m.header.schedule_id = 1;
    m.header.step = 0;
    m.header.tensor_id = static_cast<uint64_t>(first->in_msg);
    m.header.dtype = Dtype::kFp32;
    m.header.shape = {1, spec.hidden_size, per_output};
    m.header.src_rank = src_rank;
    m.payload =
        transport::Payload(static_cast<size_t>(per_output * spec.hidden_size) * sizeof(float));
    std::memset(m.payload.data(), 0, m.payload.size());
    peer_ends[i]->Send(std::move(m), transport::Millis(5000));
  }
  Step step;
  step.work.push_back({0, 7, 0, {5}, true, {}, 0});
  std::string what;
  try {
    runner.RunStep(step);
  } catch (const Error& e) {
    what = e.what();
    EXPECT_NE(what.find("chip " + std::to_string(mine.chip) + " step 0 instruction"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("all_reduce recv"), std::string::npos) << what;
  }
  runner.Close();
  for (auto& e : peer_ends) e->Close(transport::Millis(1000));
  return what;
}

// A TP 2 peer that sends its one-shot all-reduce partial with the wrong shape (two values per
// output where the embedding's rows carry one): the receiving chip stops with an Error naming
// itself, the step and the instruction, instead of combining the wrong numbers.
TEST(ChipRunner, MisshapenAllReducePartialIsNamed) {
  const std::string what = FirstAllReduceFailure(2, 1);
  EXPECT_NE(what.find("wrong shape"), std::string::npos) << what;
}

// A collective message names its sender's rank (it may come over a route through other chips,
// so the link says nothing): one that names no rank of the group, or the receiver's own, is
// refused naming the rank, not combined as someone's partial.
TEST(ChipRunner, CollectiveMessageNamingAWrongRankIsRefused) {
  for (int32_t rank : {-1, 0, 2}) {
    const std::string what = FirstAllReduceFailure(1, rank);
    EXPECT_NE(what.find("names sender rank " + std::to_string(rank)), std::string::npos) << what;
  }
}

TEST(ChipRunner, RejectsMismatchedSetupAndSteps) {
  const TwoChips t;
  auto transport = transport::CreateTransport({});
  ChipSetup setup = t.Setup(0, 1);
  setup.shard = t.Setup(1, 1).shard;  // stage 1's shard on stage 0's chip
  EXPECT_THROW(ChipRunner(std::move(setup), {}), Error);
  ChipSetup missing = t.Setup(0, 1);
  EXPECT_THROW(ChipRunner(std::move(missing), {}), Error);  // no endpoints for its links
  EXPECT_EQ(schedule::ProgramSlots(t.schedule.programs[0]), 2);
}

}  // namespace
}  // namespace lockstep::worker
