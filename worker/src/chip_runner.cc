#include "lockstep/worker/chip_runner.h"

#include "chip_runner_impl.h"

namespace lockstep::worker {
namespace {

using partition::OpKind;
using schedule::InstrKind;
using schedule::Instruction;
using schedule::Tag;

// Whether a stage's all-reduces run as a ring, from its program: per collective a direct
// exchange has one reduce-scatter Reduce, a ring of g > 2 ranks one per step, g - 1 (a ring of 2
// is a direct exchange). Throws Error (kInvalidInput) for a program that is neither.
bool CollectivesAreRing(const schedule::ChipProgram& program, int tp, const std::string& chip) {
  if (tp <= 2) return false;
  int64_t sends = 0, reduces = 0;
  for (const Instruction& in : program.instructions) {
    if (in.sequence != 0 || in.tag != Tag::kReduceScatter) continue;
    sends += in.kind == InstrKind::kSend;
    reduces += in.kind == InstrKind::kReduce;
  }
  const int64_t collectives = sends / (tp - 1);  // both send tp - 1 times per collective
  if (collectives == 0 || reduces == collectives) return false;
  if (reduces == collectives * (tp - 1)) return true;
  throw InvalidInput(chip + ": its program has " + std::to_string(sends) +
                     " reduce-scatter sends and " + std::to_string(reduces) +
                     " reduces per sequence, neither a direct exchange nor a ring of " +
                     std::to_string(tp));
}

// The ranks per node when a stage's all-reduces are hierarchical (schedule's
// AllReduceHierarchical), from its program: per collective n - 1 reduce-scatter sends (to the
// node's peers), one reduce-scatter Reduce, and tp / n - 1 sends of the node's sum across (tag
// kAllReduce); 0 for any other shape (a direct exchange sends tp - 1 times, a ring never across).
int HierarchicalRanks(const schedule::ChipProgram& program, int tp) {
  if (tp < 4) return 0;
  int64_t sends = 0, reduces = 0, across = 0;
  for (const Instruction& in : program.instructions) {
    if (in.sequence != 0) continue;
    if (in.tag == Tag::kReduceScatter) {
      sends += in.kind == InstrKind::kSend;
      reduces += in.kind == InstrKind::kReduce;
    }
    across += in.tag == Tag::kAllReduce && in.kind == InstrKind::kSend;
  }
  if (reduces == 0 || across == 0 || sends % reduces != 0) return 0;
  const int64_t n = sends / reduces + 1;
  if (n < 2 || n >= tp || tp % n != 0 || across != reduces * (tp / n - 1)) return 0;
  return static_cast<int>(n);
}

}  // namespace

ChipRunner::ChipRunner(ChipSetup setup, std::vector<std::unique_ptr<transport::Endpoint>> endpoints)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  const std::string chip = "chip " + std::to_string(setup.program.chip);
  const std::vector<topology::LinkId> links = schedule::ProgramLinks(setup.program);
  if (endpoints.size() != links.size()) {
    throw InvalidInput(chip + ": its program uses " + std::to_string(links.size()) +
                       " links, got " + std::to_string(endpoints.size()) + " endpoints");
  }
  for (size_t i = 0; i < links.size(); ++i) {
    if (endpoints[i] == nullptr) throw InvalidInput(chip + ": a null endpoint");
    im.by_link[links[i]] = endpoints[i].get();
  }
  for (const schedule::LinkTable& t : setup.incoming) {
    if (t.to != setup.program.chip || im.by_link.count(t.link) == 0) continue;
    std::vector<int64_t>& order = im.arrival_order[t.link];
    for (const schedule::Reservation& r : t.reservations) order.push_back(r.msg);
  }
  for (const Instruction& in : setup.program.instructions) {
    if (in.token != 0) {
      throw InvalidInput(chip +
                         ": the runtime runs programs compiled for one decode token per "
                         "step (tokens = 1, no prefill); found " +
                         schedule::DescribeStep(in));
    }
  }
  im.slots = schedule::ProgramSlots(setup.program);
  im.hidden = setup.spec.hidden_size;
  if (setup.stage >= 0) {
    if (setup.shard.stage != setup.stage || setup.shard.rank != setup.rank) {
      throw InvalidInput(chip + ": given the shard of stage " + std::to_string(setup.shard.stage) +
                         " rank " + std::to_string(setup.shard.rank) + ", its program is stage " +
                         std::to_string(setup.stage) + " rank " + std::to_string(setup.rank));
    }
    im.tp = setup.shard.units.tp;
    if (static_cast<int>(setup.group.size()) != im.tp ||
        setup.group[static_cast<size_t>(setup.rank)] != setup.program.chip) {
      throw InvalidInput(chip + ": its TP group must list " + std::to_string(im.tp) +
                         " chips with this chip at rank " + std::to_string(setup.rank));
    }
    for (size_t r = 0; r < setup.group.size(); ++r)
      im.rank_of[setup.group[r]] = static_cast<int>(r);
    im.hier = HierarchicalRanks(setup.program, im.tp);
    im.ring = im.hier == 0 && CollectivesAreRing(setup.program, im.tp, chip);
    if (!im.ring) {
      // A direct exchange picks the segment a hop carries by the peer at its end.
      for (const Instruction& in : setup.program.instructions) {
        if (in.kind == InstrKind::kSend && in.tag == Tag::kReduceScatter &&
            im.rank_of.count(in.peer) == 0) {
          throw InvalidInput(chip + ": " + schedule::DescribeStep(in) + " goes to chip " +
                             std::to_string(in.peer) +
                             ", outside its TP group: a direct exchange must go straight to the "
                             "peer rank (a routed one would need its destination in the program)");
        }
      }
    }
    im.shard.emplace(setup.spec, std::move(setup.shard));  // a copy would be the whole shard again
  }
  im.setup = std::move(setup);
  im.endpoints = std::move(endpoints);
}

ChipRunner::~ChipRunner() = default;

int ChipRunner::chip() const { return impl_->setup.program.chip; }
int32_t ChipRunner::slots() const { return impl_->slots; }

std::vector<SlotResult> ChipRunner::RunStep(const Step& step) {
  Impl& im = *impl_;
  if (im.closed)
    throw Error(ErrorCode::kDisconnected, "chip " + std::to_string(chip()) + " is closed");
  std::vector<SlotState> state(static_cast<size_t>(im.slots));
  for (const SlotWork& w : step.work) {
    if (w.slot < 0 || w.slot >= im.slots || state[static_cast<size_t>(w.slot)].work != nullptr) {
      throw InvalidInput("chip " + std::to_string(chip()) + " step " + std::to_string(step.index) +
                         ": slot " + std::to_string(w.slot) +
                         " is outside the program's slots or given twice");
    }
    if (w.tokens.empty()) {
      throw InvalidInput("step " + std::to_string(step.index) + ": slot " + std::to_string(w.slot) +
                         " has no tokens");
    }
    SlotState& st = state[static_cast<size_t>(w.slot)];
    st.work = &w;
    st.rows = static_cast<int64_t>(w.tokens.size());
    if (w.reset && im.shard) im.shard->ResetSlot(w.slot);
  }
  im.next_arrival.clear();
  im.early.clear();
  FlightRecorder* recorder = im.setup.recorder;
  if (recorder != nullptr) recorder->BeginStep(step.index);
  const std::vector<Instruction>& program = im.setup.program.instructions;
  auto execute = [&](size_t i) {
    const Instruction& in = program[i];
    SlotState& st = state[static_cast<size_t>(in.sequence)];
    if (recorder != nullptr) recorder->BeginOp(im.Entry(in, i));
    im.Guarded(in, i, step.index, [&] {
      switch (in.kind) {
        case InstrKind::kCompute:
          im.Compute(in, i, step.index, st);
          break;
        case InstrKind::kReduce:
          im.Reduce(in, i, step.index, st);
          break;
        case InstrKind::kSend:
          im.SendOut(in, i, step.index, st);
          break;
        case InstrKind::kRecv:
          im.ReceiveIn(in, i, step.index, st, im.Receive(in, step.index));
          break;
        case InstrKind::kForward:
          im.Forward(in, step.index, im.Receive(in, step.index));
          break;
      }
    });
    if (recorder != nullptr) recorder->EndOp();
  };
  // A sampled token goes back to the first stage for its sequence's next token, which the next
  // Step brings as well: nothing in this step reads it. Its Recv therefore waits at the end of
  // the step (the message is still taken: nothing is left on the link, and a later message on
  // the same link is read past it in arrival order and kept until then), not where the schedule
  // put it, where it would hold this chip's compute for the last stage: a first stage would
  // wait on the last one for every sequence in flight instead of running ahead.
  std::vector<size_t> tokens_back;
  for (size_t i = 0; i < program.size(); ++i) {
    if (program[i].kind == InstrKind::kRecv && program[i].tag == Tag::kToken) {
      tokens_back.push_back(i);
    } else {
      execute(i);
    }
  }
  for (size_t i : tokens_back) execute(i);
  if (recorder != nullptr) recorder->EndStep();
  std::vector<SlotResult> out;
  for (SlotState& st : state) {
    if (st.result) out.push_back(std::move(*st.result));
  }
  return out;
}

void ChipRunner::Close() {
  Impl& im = *impl_;
  if (im.closed) return;
  im.closed = true;
  for (auto& e : im.endpoints) {
    try {
      e->Close(transport::Millis(1000));
    } catch (const Error&) {
      // A peer that is already gone cannot take the end-of-stream marker; nothing to do.
    }
  }
}

}  // namespace lockstep::worker
