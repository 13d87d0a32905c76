// ChipRunner::Run: every chip of a plan as a thread running on its own, fed only its admission
// log, against the reference.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/control/settings.h"
#include "lockstep/model/reference.h"
#include "lockstep/schedule/queries.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"
#include "lockstep/transport/transport.h"
#include "lockstep/worker/chip_runner.h"

namespace lockstep::worker {
namespace {

partition::ModelSpec Tiny() {
  return partition::ParseModelSpec(R"({"_name_or_path": "tiny-tp8", "model_type": "qwen2",
    "hidden_size": 64, "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 6,
    "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 200,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64})",
                                   "tiny-tp8");
}

// A run's control plane in memory: the whole admission log up front, closed; the tokens the
// sampling chip emits collected by step.
class MemoryControl : public RunControl {
 public:
  struct Sink {
    std::mutex mutex;
    std::vector<std::pair<int64_t, SampledToken>> tokens;  // (step, token) as emitted
    std::vector<std::string> refused;
  };
  MemoryControl(std::vector<Admission> log, Sink& sink) : log_(std::move(log)), sink_(sink) {}

  Admission AwaitAdmission(int64_t number) override {
    if (number < 0 || static_cast<size_t>(number) >= log_.size()) {
      throw Error(ErrorCode::kInternal, "no admission " + std::to_string(number));
    }
    return log_[static_cast<size_t>(number)];
  }
  Inbox Poll(bool) override {
    Inbox in;
    if (!polled_) in.admissions = log_;
    polled_ = true;
    in.closed = true;
    return in;
  }
  void Refuse(const Admission& a, int64_t, const std::string& why) override {
    std::lock_guard lock(sink_.mutex);
    sink_.refused.push_back(std::to_string(a.number) + ": " + why);
  }
  void Emit(int64_t step, std::vector<SampledToken> tokens) override {
    std::lock_guard lock(sink_.mutex);
    for (SampledToken& t : tokens) sink_.tokens.emplace_back(step, std::move(t));
  }

 private:
  std::vector<Admission> log_;
  Sink& sink_;
  bool polled_ = false;
};

struct Request {
  std::vector<int32_t> prompt;
  int64_t max_new = 0;
  model::SamplingOptions sampling;
};

// How a run keeps time (ChipSetup: pace, virtual time) and which transport moves its data.
struct Timing {
  std::string transport = "inproc";
  bool virtual_time = false;
  double pace = 0;
  // Changes a chip's decode program before the run (a hand-broken schedule).
  std::function<void(schedule::ChipProgram&)> tamper;
};

struct Outcome {
  std::vector<std::pair<int64_t, SampledToken>> emitted;
  std::vector<RunReport> reports;                // by chip, in program order
  std::vector<control::FlightEntry> first_chip;  // what the first chip executed, in order
  // Per chip: its decode program's instructions and each prefill program's.
  std::vector<int64_t> decode_size;
  std::vector<std::vector<int64_t>> prefill_size;
};

Outcome RunPlan(const partition::ModelSpec& spec, const model::LlamaWeights& weights,
                const topology::Topology& topo, const partition::Plan& plan, int32_t slots,
                const std::vector<Request>& requests, const std::vector<int64_t>& buckets,
                int64_t chunk, int lookahead, const Timing& timing = {});

// Every chip of `layout` on `topo` as a thread: the decode program (modulo form) and one prefill
// program per bucket, admissions in request order.
Outcome RunAll(const partition::ModelSpec& spec, const model::LlamaWeights& weights,
               const topology::Topology& topo, std::vector<std::pair<int64_t, int>> layout,
               int32_t slots, const std::vector<Request>& requests,
               const std::vector<int64_t>& buckets, int64_t chunk, int lookahead = 1,
               const Timing& timing = {}) {
  partition::PlanOptions po;
  po.layout = std::move(layout);
  return RunPlan(spec, weights, topo, partition::MakePlan(spec, topo, po), slots, requests, buckets,
                 chunk, lookahead, timing);
}

Outcome RunPlan(const partition::ModelSpec& spec, const model::LlamaWeights& weights,
                const topology::Topology& topo, const partition::Plan& plan, int32_t slots,
                const std::vector<Request>& requests, const std::vector<int64_t>& buckets,
                int64_t chunk, int lookahead, const Timing& timing) {
  schedule::ScheduleOptions so;
  so.tokens = 1;
  so.sequences = slots;
  so.modulo = true;
  const schedule::GlobalSchedule decode = schedule::Compile(plan, spec, topo, so);
  std::vector<schedule::GlobalSchedule> prefill;
  for (int64_t b : buckets) {
    schedule::ScheduleOptions po2;
    po2.sequences = 1;
    po2.prefill = true;
    po2.prompt_len = b;
    po2.prompt_buckets = buckets;
    po2.prefill_chunk = chunk;
    prefill.push_back(PrefillPass(schedule::Compile(plan, spec, topo, po2)));
  }
  std::vector<Admission> log;
  for (size_t i = 0; i < requests.size(); ++i) {
    Admission a;
    a.number = static_cast<int64_t>(i);
    a.step = lookahead;
    a.request = 1000 + i;
    a.tokens = requests[i].prompt;
    a.max_new = requests[i].max_new;
    a.sampling = requests[i].sampling;
    a.logits = true;
    log.push_back(std::move(a));
  }
  MemoryControl::Sink sink;
  transport::TransportOptions to;
  to.backend = timing.transport;
  to.queue_capacity = 256;
  auto transport = transport::CreateTransport(to);
  const std::vector<model::StageUnits> stages = model::StagesFromPlan(plan);
  Outcome out;
  out.reports.resize(decode.programs.size());
  FlightRecorder recorder(1 << 16);
  const int64_t epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count() +
                        50'000'000;  // every chip has its links open by then
  std::vector<std::string> errors(decode.programs.size());
  std::vector<std::thread> threads;
  for (size_t c = 0; c < decode.programs.size(); ++c) {
    threads.emplace_back([&, c] {
      const schedule::ChipProgram& p = decode.programs[c];
      std::unique_ptr<ChipRunner> runner;
      try {
        ChipSetup s;
        s.spec = spec;
        s.stage = p.stage;
        s.rank = p.rank;
        s.program = p;
        if (p.stage >= 0) {
          s.shard = model::ExtractShard(weights, spec, stages, p.stage, p.rank);
          s.group = plan.stages[static_cast<size_t>(p.stage)].chips;
        }
        s.schedule_id = 7;
        s.timeout = transport::Millis(20000);
        if (timing.tamper) timing.tamper(s.program);
        s.repeat_ns = decode.repeat_ns;
        s.decode_makespan_ns = decode.makespan_ns;
        s.lookahead = lookahead;
        s.virtual_time = timing.virtual_time;
        s.pace = timing.pace;
        s.epoch_ns = epoch;
        if (c == 0) s.recorder = &recorder;
        for (size_t b = 0; b < buckets.size(); ++b) {
          ChipSetup::Prefill pf;
          pf.bucket = buckets[b];
          pf.chunk_tokens = prefill[b].prefill_chunk_tokens;
          pf.makespan_ns = prefill[b].makespan_ns;
          for (const schedule::ChipProgram& q : prefill[b].programs) {
            if (q.chip == p.chip) pf.program = q;
          }
          s.prefill.push_back(std::move(pf));
        }
        const auto links = schedule::ProgramLinks(p);
        runner = std::make_unique<ChipRunner>(
            std::move(s),
            transport->OpenChip(static_cast<uint32_t>(p.chip), control::LinkSpecs(topo, links),
                                transport::Millis(20000)));
        MemoryControl control(log, sink);
        out.reports[c] = runner->Run(control);
      } catch (const std::exception& e) {
        errors[c] = e.what();
      }
      if (runner) runner->Close();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const schedule::ChipProgram& p : decode.programs) {
    out.decode_size.push_back(static_cast<int64_t>(p.instructions.size()));
    out.prefill_size.emplace_back();
    for (const schedule::GlobalSchedule& pf : prefill) {
      int64_t n = 0;
      for (const schedule::ChipProgram& q : pf.programs) {
        if (q.chip == p.chip) n = static_cast<int64_t>(q.instructions.size());
      }
      out.prefill_size.back().push_back(n);
    }
  }
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  EXPECT_TRUE(sink.refused.empty()) << sink.refused.front();
  out.emitted = std::move(sink.tokens);
  out.first_chip = recorder.Entries();
  return out;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Every request's tokens and logits, in token order, equal model::Generate's bit for bit.
void ExpectReference(const partition::ModelSpec& spec, const model::LlamaWeights& weights,
                     const std::vector<Request>& requests, const Outcome& got) {
  const model::ReferenceModel reference(spec, weights);
  for (size_t i = 0; i < requests.size(); ++i) {
    const model::Generation want = model::Generate(reference, requests[i].prompt,
                                                   requests[i].max_new, requests[i].sampling, true);
    std::vector<const SampledToken*> mine;
    for (const auto& [step, t] : got.emitted) {
      if (t.request == 1000 + i) mine.push_back(&t);
    }
    ASSERT_EQ(mine.size(), want.tokens.size()) << "request " << i;
    for (size_t k = 0; k < mine.size(); ++k) {
      EXPECT_EQ(mine[k]->index, static_cast<int64_t>(k)) << "request " << i;
      EXPECT_EQ(mine[k]->token, want.tokens[k]) << "request " << i << " token " << k;
      EXPECT_TRUE(SameBits(mine[k]->logits, want.logits[k])) << "request " << i << " token " << k;
      EXPECT_EQ(mine[k]->last, k + 1 == mine.size()) << "request " << i << " token " << k;
    }
  }
}

std::vector<Request> Requests() {
  return {{{3, 1, 4, 1, 5}, 3, {}},
          {{199}, 2, {.temperature = 0.8, .top_p = 0.9, .seed = 7}},
          {{9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4}, 4, {}},  // 19: the 32 bucket
          {{0, 7}, 1, {}},
          {{11, 12, 13, 14, 15, 16, 17, 18, 19}, 5, {.temperature = 1.0, .top_p = 1.0, .seed = 3}},
          {{42, 43, 44}, 2, {}}};
}

// Two stages on two chips, 3 slots for 6 requests: every slot is refilled as its request
// finishes, prompts of 1-19 tokens go through the 16 and 32 buckets in chunks of 4 (the first
// chunks empty for short prompts), and every token and logit is the reference's.
TEST(SelfClocked, TwoStagesRefillSlotsBitForBit) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const std::vector<Request> requests = Requests();
  const Outcome got = RunAll(spec, weights, topo, {{4, 1}, {4, 1}}, 3, requests, {16, 32}, 4);
  ExpectReference(spec, weights, requests, got);
  for (const RunReport& r : got.reports) EXPECT_EQ(r.prefill_steps, 6);
}

// Consecutive decode steps overlap as the modulo schedule has them: stage 0 starts a step's first
// slots before the step before it has its last tokens back (no bubble between steps).
TEST(SelfClocked, ConsecutiveDecodeStepsOverlap) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  std::vector<Request> requests;
  for (int32_t i = 0; i < 4; ++i) requests.push_back({{i + 1, i + 2}, 6, {}});
  const Outcome got = RunAll(spec, weights, topo, {{4, 1}, {4, 1}}, 4, requests, {16}, 16);
  ExpectReference(spec, weights, requests, got);
  int64_t overlaps = 0, newest = -1;
  for (const control::FlightEntry& e : got.first_chip) {
    if (e.step < newest) ++overlaps;  // an instruction of an older step after a newer one began
    newest = std::max(newest, e.step);
  }
  EXPECT_GT(overlaps, 0) << "decode steps ran one after another";
}

// The same requests give the same steps and bits every run, whatever the threads' timing.
TEST(SelfClocked, SameStepsEveryRun) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const Outcome a = RunAll(spec, weights, topo, {{3, 1}, {5, 1}}, 2, Requests(), {32}, 8);
  const Outcome b = RunAll(spec, weights, topo, {{3, 1}, {5, 1}}, 2, Requests(), {32}, 8);
  ASSERT_EQ(a.emitted.size(), b.emitted.size());
  for (size_t i = 0; i < a.emitted.size(); ++i) {
    EXPECT_EQ(a.emitted[i].first, b.emitted[i].first) << i;
    EXPECT_EQ(a.emitted[i].second, b.emitted[i].second) << i;
  }
  EXPECT_EQ(a.reports[0].steps, b.reports[0].steps);
}

// Tensor parallelism on both stages: stage 0's rank 1 learns each step's kind from rank 0's
// all-reduce messages, and the collectives of consecutive decode steps overlap.
TEST(SelfClocked, TwoStagesOfTp2BitForBit) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const std::vector<Request> requests = Requests();
  ExpectReference(spec, weights, requests,
                  RunAll(spec, weights, topo, {{4, 2}, {4, 2}}, 4, requests, {16, 32}, 16));
}

// One stage (stage 0 samples itself) of TP 4: the single-stage token path.
TEST(SelfClocked, OneStageTp4BitForBit) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const std::vector<Request> requests = Requests();
  ExpectReference(spec, weights, requests,
                  RunAll(spec, weights, topo, {{8, 4}}, 2, requests, {32}, 32));
}

// In virtual time over the sim transport every instruction of every chip starts exactly when the
// schedule says (decode periods overlapping, prefill passes between them), on several plans.
TEST(SelfClocked, VirtualTimeReproducesEveryScheduledStart) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology node = topology::GenerateNode(topology::LpuV1());
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  const std::vector<Request> requests = Requests();
  Timing sim;
  sim.transport = "sim";
  sim.virtual_time = true;
  struct Plan {
    const topology::Topology* topo;
    std::vector<std::pair<int64_t, int>> layout;
    int32_t slots;
  };
  for (const Plan& p : {Plan{&node, {{4, 1}, {4, 1}}, 3}, Plan{&node, {{4, 2}, {4, 2}}, 4},
                        Plan{&node, {{8, 4}}, 2}, Plan{&rack, {{2, 1}, {2, 8}, {4, 2}}, 3},
                        Plan{&rack, {{8, 16}}, 2}}) {
    const Outcome got =
        RunAll(spec, weights, *p.topo, p.layout, p.slots, requests, {16, 32}, 8, 1, sim);
    ExpectReference(spec, weights, requests, got);
    for (size_t c = 0; c < got.reports.size(); ++c) {
      const LagHistogram& lag = got.reports[c].lag;
      EXPECT_GT(lag.count(), 0) << "chip " << c;
      EXPECT_EQ(lag.max_ns(), 0) << "chip " << c << " of a " << p.layout.size() << "-stage plan";
    }
  }
}

// A chip whose program takes longer than its schedule says (a hand-broken schedule: one compute
// 1 ms longer than its slot) makes later instructions start late, in virtual time too.
TEST(SelfClocked, VirtualTimeShowsAScheduleThatDoesNotHold) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  Timing broken;
  broken.transport = "sim";
  broken.virtual_time = true;
  broken.tamper = [](schedule::ChipProgram& p) {
    for (schedule::Instruction& in : p.instructions) {
      if (in.kind == schedule::InstrKind::kCompute && in.op == partition::OpKind::kMlp) {
        in.duration_ns += 1'000'000;
        return;
      }
    }
  };
  const std::vector<Request> requests = {{{1, 2, 3}, 3, {}}};
  const Outcome got =
      RunAll(spec, weights, topo, {{4, 1}, {4, 1}}, 2, requests, {16}, 16, 1, broken);
  ExpectReference(spec, weights, requests, got);  // the bits do not depend on time
  int64_t worst = 0;
  for (const RunReport& r : got.reports) worst = std::max(worst, r.lag.max_ns());
  EXPECT_GE(worst, 1'000'000);
}

// Virtual time holds a message until the link model has it there (schedule.h: a hop's latency is
// time in flight; a Forward passes it on cut-through): with every Recv and Forward of the decode
// program scheduled 300 ns earlier than its message can be there (a hand-broken schedule; an
// lpu-v1 hop takes 600 ns and more), those with no slack start exactly 300 ns late, nothing
// later. Stamping a message's arrival without the hop's latency would start them on time.
TEST(SelfClocked, VirtualTimeHoldsAMessageUntilItArrives) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology node = topology::GenerateNode(topology::LpuV1());
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  constexpr int64_t kEarly = 300;
  Timing early;
  early.transport = "sim";
  early.virtual_time = true;
  early.tamper = [](schedule::ChipProgram& p) {
    for (schedule::Instruction& in : p.instructions) {
      if (in.kind == schedule::InstrKind::kRecv || in.kind == schedule::InstrKind::kForward) {
        in.start_ns -= kEarly;
        in.end_ns -= kEarly;
      }
    }
  };
  const std::vector<Request> requests = {{{1, 2, 3}, 3, {}}, {{4, 5}, 2, {}}};
  for (const auto& [topo, layout] :
       {std::pair{&node, std::vector<std::pair<int64_t, int>>{{4, 1}, {4, 1}}},
        std::pair{&rack, std::vector<std::pair<int64_t, int>>{{2, 1}, {2, 8}, {4, 2}}}}) {
    const Outcome got = RunAll(spec, weights, *topo, layout, 2, requests, {16}, 16, 1, early);
    ExpectReference(spec, weights, requests, got);
    int64_t worst = 0;
    for (size_t c = 0; c < got.reports.size(); ++c) {
      EXPECT_LE(got.reports[c].lag.max_ns(), kEarly) << "chip " << c;
      worst = std::max(worst, got.reports[c].lag.max_ns());
    }
    EXPECT_EQ(worst, kEarly) << layout.size() << "-stage plan";
  }
}

// Paced: no instruction starts before epoch + pace x its scheduled start, and each start's lag
// is recorded; the run takes at least pace x the last scheduled start.
TEST(SelfClocked, PacedRunStartsNothingEarly) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const std::vector<Request> requests = {{{1, 2, 3}, 2, {}}, {{4, 5}, 2, {}}};
  // The schedule's times are lpu-v1 microseconds; dilated to a few hundred ms of this host.
  Timing paced;
  paced.pace = 2000;
  const Outcome got =
      RunAll(spec, weights, topo, {{4, 1}, {4, 1}}, 2, requests, {16}, 16, 1, paced);
  ExpectReference(spec, weights, requests, got);
  for (size_t c = 0; c < got.reports.size(); ++c) {
    const RunReport& r = got.reports[c];
    EXPECT_EQ(r.prefill_steps, 2);
    // Every instruction was paced: (steps - prefills) decode periods and 2 prefill passes.
    EXPECT_EQ(r.lag.count(), (r.steps - r.prefill_steps) * got.decode_size[c] +
                                 r.prefill_steps * got.prefill_size[c][0])
        << "chip " << c;
    EXPECT_LE(r.lag.Percentile(0.5), r.lag.max_ns());
  }
}

// A TP group wider than a node (ring all-reduces, legs forwarded) on each of 4 stages over two
// racks of a Dragonfly: kinds reach every chip through rings and multi-hop routes alone.
TEST(SelfClocked, RingsOverTwoRacksBitForBit) {
  const partition::ModelSpec spec = Tiny();
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateSystem(topology::LpuV1(), 2);
  partition::PlanOptions po;
  po.layout = {{2, 16}, {2, 16}, {2, 16}, {2, 16}};
  partition::Plan plan = partition::MakePlan(spec, topo, po);
  // Stages 2 and 3 into the second rack (chips 72-135): the routes between racks are forwarded.
  for (size_t s = 2; s < 4; ++s) {
    for (topology::ChipId& c : plan.stages[s].chips) c += 72 - 32;
  }
  const std::vector<Request> requests = Requests();
  ExpectReference(spec, weights, requests,
                  RunPlan(spec, weights, topo, plan, 3, requests, {16, 32}, 8, 1));
}

// TP 16 over two whole nodes with row-parallel projections: the compiler lays out hierarchical
// all-reduces (reduce-scatter in each node, node sums exchanged across, all-gather in each
// node), prompt chunks and decode alike; every token is the reference's.
TEST(SelfClocked, HierarchicalOverTwoNodesBitForBit) {
  const partition::ModelSpec spec = partition::ParseModelSpec(R"({"_name_or_path": "tp16-rows",
    "model_type": "llama", "hidden_size": 64, "head_dim": 32, "intermediate_size": 1024,
    "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 200, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "max_position_embeddings": 32})",
                                                              "tp16-rows");
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 11);
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = {{2, 16}, {2, 16}};
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  for (const partition::StagePlan& st : plan.stages) {
    ASSERT_EQ(partition::HierarchicalNodeSize(spec, topo, st.chips), 8);
  }
  const std::vector<Request> requests = Requests();
  ExpectReference(spec, weights, requests,
                  RunPlan(spec, weights, topo, plan, 3, requests, {16, 32}, 8, 1));
}

}  // namespace
}  // namespace lockstep::worker
