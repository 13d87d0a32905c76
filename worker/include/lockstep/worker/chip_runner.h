// A ChipRunner executes one chip's program from the static global schedule, step after step,
// with the chip's weight shard and its link endpoints. It is the data plane shared by every way
// Lockstep runs a plan: threads in one process (LocalCluster, sim or inproc transport) and
// worker processes (lockstep-worker, ipc or tcp), which differ only in the endpoints given.
//
// The program is compiled once for the per-token period every step repeats:
// schedule::Compile(plan, spec, topo, {.tokens = 1, .sequences = slots}); schedule sequence m is
// pipeline slot m. A step gives every slot at most one piece of work (a prompt or the last
// sampled token); RunStep walks the program's instructions in program order:
//   * Compute / Reduce run the shard's phases (model/stage_shard.h). Several Compute
//     instructions map onto one phase call: per sequence, embedding -> Embed; attention_norm,
//     qkv, rope, attention -> nothing yet, output_projection -> AttentionPartials;
//     attention_residual -> combine (tp 1) and add; mlp_norm -> nothing, mlp -> MlpPartials;
//     mlp_residual -> combine (tp 1) and add; final_norm -> nothing, lm_head -> HeadLogits;
//     sampling -> sample (tp 1). With tp > 1 the Reduce instructions of the all-reduce after
//     embedding / output_projection / mlp combine the partials received so far in the canonical
//     order (one-shot: each rank combines every output from every rank's whole partial;
//     reduce-scatter: each rank combines one segment of the hidden dimension from every rank's
//     partials; all-gather: the segments are assembled), and the gather after sampling
//     brings every rank's logits slice to rank 0, which samples. When an o / down projection is
//     column-parallel (model::RowParallelProjection false: slices not whole 64-element chunks),
//     the same reduce-scatter messages carry the sender's whole input slice instead, and rank j
//     computes segment j itself (StageShard::ColumnOutputs) — same messages, same bits.
//   * Send / Recv / Forward move real fp32 tensors over the endpoints in the order the program
//     says; every message is stamped with the schedule id, step = Step::index and tensor id =
//     the hop's planned message id (msg / in_msg, unique in the schedule), and a Recv expects
//     exactly that, so a wrong or missing message is an Error naming the chip, the instruction
//     (schedule::DescribeStep), the link and the step. Shapes follow the step's rows (the cost
//     model's planned bytes are not the real sizes); an idle slot's tensors have zero rows.
//   * Collectives run as the compiler lays them out for a fully connected group (one-shot, or
//     direct reduce-scatter then all-gather; segment j of the hidden dimension =
//     [h*j/t, h*(j+1)/t) is combined by rank j from every rank's partials). A ring all-reduce (a
//     TP group spanning nodes) is refused at construction for now; so is a one-shot all-reduce
//     of a column-parallel projection (the compiler never lays one out).
//   * The token transfer from the last stage to the first carries the sampled token (an int32 as
//     4 int8 bytes, -1 for an idle slot); the next step's tokens come from the Step, not from that
//     message.
// Several sequences' instructions interleave in program order; each slot has its own state.
//
// Thread-safety: one thread drives a ChipRunner (RunStep, Close). It owns its endpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "lockstep/model/reference.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/topology/topology.h"
#include "lockstep/transport/endpoint.h"
#include "lockstep/worker/flight_recorder.h"

namespace lockstep::worker {

// Everything one chip needs besides its links.
struct ChipSetup {
  partition::ModelSpec spec;
  // Its place in the plan; stage -1: a chip that only forwards (no shard needed).
  int stage = 0;
  int rank = 0;
  // Compile(plan, spec, topo, {.tokens = 1, .sequences = slots}).programs[i].
  schedule::ChipProgram program;
  // ExtractShard(weights, spec, StagesFromPlan(plan), stage, rank), or ShardFromBytes.
  model::ShardWeights shard;
  // The chips of its stage's TP group in rank order (plan.stages[stage].chips): a collective
  // message's sender rank tells which slice of which partial it carries. Empty for stage -1.
  std::vector<topology::ChipId> group;
  // The schedule's reservation tables of the link directions into this chip
  // (IncomingTables(schedule, chip)): the order messages arrive on each link. A Forward sits in
  // program order at its outgoing start, after messages that arrive later on its incoming link,
  // so the runner receives in this order and holds early messages until their instruction.
  std::vector<schedule::LinkTable> incoming;
  uint64_t schedule_id = 0;  // stamped on every frame; the receiver checks it
  // How long a Send or Recv may wait before the run is declared broken (kUnavailable).
  transport::Millis timeout{30000};
  // Where every executed instruction is recorded (not owned; must outlive the runner). Null:
  // none. The worker's control thread reads it for heartbeats and stall reports.
  FlightRecorder* recorder = nullptr;
};

// One pipeline slot's work in one step: a sequence's new tokens (its prompt, or its last sampled
// token) at KV position `position`; `reset` = a new sequence takes the slot (its KV cache is
// cleared first). `sample_index` = how many tokens the request has generated so far (the step
// index of model::SampleToken, so sampling is reproducible whatever ran before).
struct SlotWork {
  int32_t slot = 0;
  uint64_t request = 0;
  int64_t position = 0;
  std::vector<int32_t> tokens;
  bool reset = false;
  model::SamplingOptions sampling;
  int64_t sample_index = 0;
  // The sampling chip returns the logits with the token (SlotResult::logits); false: the token
  // alone (a vocabulary of floats less per token on the control plane).
  bool logits = true;
};

// Every chip of the plan gets the same Step. Slots without work sit idle for the step.
struct Step {
  int64_t index = 0;
  std::vector<SlotWork> work;  // at most one per slot, any order
};

// What the sampling chip returns for a slot that had work: the sampled token and the logits
// [vocab] it was drawn from (empty when the work did not ask for them).
struct SlotResult {
  int32_t slot = 0;
  uint64_t request = 0;
  int32_t token = 0;
  std::vector<float> logits;
};

class ChipRunner {
 public:
  // `endpoints[i]` is the chip's end of ProgramLinks(setup.program)[i] (what Transport::OpenChip
  // returns for those links, in that order). Throws Error (kInvalidInput) naming the chip for a
  // program that uses a link without an endpoint, a shard of another stage or rank, or a program
  // this runner cannot execute.
  ChipRunner(ChipSetup setup, std::vector<std::unique_ptr<transport::Endpoint>> endpoints);
  ~ChipRunner();
  ChipRunner(const ChipRunner&) = delete;
  ChipRunner& operator=(const ChipRunner&) = delete;

  // Executes the program once for `step`. Returns the results on the chip that samples (last
  // stage, rank 0), ordered by slot; empty elsewhere. Throws Error naming chip, link and step on
  // any transport failure, and kInvalidInput for a step the runner cannot take (a slot out of
  // range, twice in one step, a position that does not continue the slot's sequence).
  std::vector<SlotResult> RunStep(const Step& step);

  // Closes every endpoint (end-of-stream to the peers). Idempotent.
  void Close();

  int chip() const;
  // Number of pipeline slots (the program's sequences).
  int32_t slots() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The pipeline slots a program was compiled for (1 + the largest sequence it names).
int32_t ProgramSlots(const schedule::ChipProgram& program);

// The links a program uses (its Send/Forward/Recv links), ascending, without duplicates — what
// Transport::OpenChip must open for the chip.
std::vector<topology::LinkId> ProgramLinks(const schedule::ChipProgram& program);

// The most messages one step moves over one link direction. A chip runs its program in order
// and may trail its peers within a step, so each endpoint's queue must hold a step's messages
// (twice that if chips may start the next step before every peer finished this one), or a
// sender can block on a receiver that waits for the sender: TransportOptions::queue_capacity.
int64_t MaxMessagesPerLinkDirection(const schedule::GlobalSchedule& schedule);

// The reservation tables of the link directions that end at `chip`.
std::vector<schedule::LinkTable> IncomingTables(const schedule::GlobalSchedule& schedule,
                                                topology::ChipId chip);

// The transport's view of those links (ends, latency, bandwidth), in the same order.
std::vector<transport::LinkSpec> LinkSpecs(const topology::Topology& topo,
                                           const std::vector<topology::LinkId>& links);

}  // namespace lockstep::worker
