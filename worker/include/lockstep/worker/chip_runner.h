// A ChipRunner executes one chip's program from the static global schedule, step after step,
// with the chip's weight shard and its link endpoints. It is the data plane shared by every way
// Lockstep runs a plan: threads in one process (launch/, sim or inproc transport) and
// worker processes (lockstep-worker, ipc or tcp), which differ only in the endpoints given.
//
// Two ways to drive it. Run (run_control.h) runs step after step on its own, clocked only by
// the data on its links: the decode program for decode steps, one slot's prefill program for a
// prefill step, each step's kind learnt from its data; stage 0 takes each slot's next token from
// the sampling chip's link message. RunStep runs one step as a control message (Step) says,
// every slot's work given. Both execute the instructions alike:
//
// The decode program is compiled once for the per-token period every step repeats:
// schedule::Compile(plan, spec, topo, {.tokens = 1, .sequences = slots}); schedule sequence m is
// pipeline slot m. A step gives every slot at most one piece of work (a prompt or the last
// sampled token), in program order:
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
//     says; every message is stamped with the schedule id, step = Step::index, tensor id = the
//     hop's planned message id (msg / in_msg, unique in the schedule) and the sending chip's rank
//     in its TP group (MessageHeader::src_rank; a Forward passes the message on unchanged), and a
//     Recv expects exactly that, so a wrong or missing message is an Error naming the chip, the
//     instruction (schedule::DescribeStep), the link and the step. Shapes follow the step's rows
//     (the cost model's planned bytes are not the real sizes); an idle slot's tensors have zero
//     rows. Every hop of a multi-hop route is a Forward on the chip in between, whether it runs a
//     stage or only forwards.
//   * Collectives run as the compiler lays them out. A receiver takes a collective or gather
//     message's sender from the rank it names, never from the link it came in on (a route may
//     pass through other chips). Fully connected groups: one-shot, or direct reduce-scatter then
//     all-gather (segment j of the hidden dimension = [h*j/t, h*(j+1)/t) is combined by rank j
//     from every rank's partials). A group of whole nodes (consecutive ranks per node, both
//     projections row-parallel): hierarchical — direct reduce-scatter inside the node (rank r
//     combines segment r mod n of n), its node's canonical tree-node sums of that segment sent
//     to the rank of the same place in every other node and merged there (src/ring.h), then
//     direct all-gather inside the node. Other groups that are not fully connected: a ring,
//     t - 1 reduce-scatter and t - 1 all-gather steps to rank + 1, where rank j again ends
//     owning segment j and each message carries canonical tree-node sums of the ranks passed so
//     far (src/ring.h), so the result has the reference's bits; a column-parallel product's
//     ring passes the input slices on instead. A one-shot all-reduce of a column-parallel
//     projection is refused (the compiler never lays one out), and so is a direct exchange
//     whose hop does not end at the peer rank.
//   * The token transfer from the last stage to the first carries the sampled token and whether
//     it is its request's last (two int32 as 8 int8 bytes; token -1 for an idle slot). Run feeds
//     it to the slot's next step; RunStep takes the next step's tokens from the Step instead.
// Several sequences' instructions interleave in program order; each slot has its own state.
//
// Thread-safety: one thread drives a ChipRunner (RunStep, Close). It owns its endpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "lockstep/control/step.h"
#include "lockstep/model/reference.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/schedule/queries.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/topology/topology.h"
#include "lockstep/transport/endpoint.h"
#include "lockstep/worker/flight_recorder.h"
#include "lockstep/worker/run_control.h"

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
  // (schedule::IncomingTables(schedule, chip)): the order messages arrive on each link. A Forward
  // sits in program order at its outgoing start, after messages that arrive later on its incoming
  // link, so the runner receives in this order and holds early messages until their instruction.
  std::vector<schedule::LinkTable> incoming;
  uint64_t schedule_id = 0;  // stamped on every frame; the receiver checks it
  // How long a Send or Recv may wait before the run is declared broken (kUnavailable).
  transport::Millis timeout{30000};
  // Where every executed instruction is recorded (not owned; must outlive the runner). Null:
  // none. The worker's control thread reads it for heartbeats and stall reports.
  FlightRecorder* recorder = nullptr;

  // Running on its own (Run) also takes the following; RunStep ignores them.
  // The decode program's repeat interval R: step k + 1's decode instructions are step k's, R
  // later (the modulo schedule's repeat_ns: Compile(... {.tokens = 1, .sequences = slots,
  // .modulo = true}), whose programs are `program`'s).
  int64_t repeat_ns = 0;
  // One slot's prompt as one step, per prompt bucket (ascending; the same list on every chip):
  // PrefillPass(Compile(... {.sequences = 1, .prefill = true, .prompt_len = bucket,
  // .prefill_chunk = C})).programs' entry for this chip (empty if it has none). Sequence 0 is
  // the slot the step's kind names; the prompt fills the chunks from the end (the last chunk,
  // which samples the first token, always holds the prompt's last tokens).
  struct Prefill {
    int64_t bucket = 0;        // the longest prompt it takes
    int64_t chunk_tokens = 0;  // tokens per chunk (the schedule's prefill_chunk_tokens)
    schedule::ChipProgram program;
    int64_t makespan_ns = 0;  // the compiled pass's makespan over every chip
  };
  std::vector<Prefill> prefill;
  // How many steps ahead a step's kind is announced (run_control.h); the same on every chip.
  int lookahead = 1;
  // Time. An instruction's scheduled start in a run is T(step) + its program's start_ns: T(0) =
  // 0, T(k + 1) = T(k) + repeat_ns between decode steps, else T(k) + the makespan of step k's
  // program (decode_makespan_ns, Prefill::makespan_ns; over every chip, so every chip's T agrees).
  int64_t decode_makespan_ns = 0;
  // pace >= 1: no instruction starts before epoch_ns + pace x its scheduled start (steady-clock
  // ns, one origin for every chip of the run), and Run reports how late each started. 0: as soon
  // as its data is there.
  double pace = 0;
  int64_t epoch_ns = 0;
  // Virtual time (the sim transport): a clock of planned durations instead of the wall. An
  // instruction starts at the latest of its scheduled start, its inputs (the program's deps, the
  // slot's previous step, a message's virtual arrival) and its resource (the compute unit, the
  // outgoing link direction, one at a time); it takes its planned duration or hop time, and a
  // message carries its virtual arrival (MessageHeader::send_time_ns). Run reports each start's
  // lag behind the schedule: all 0 when the run reproduces the schedule exactly.
  bool virtual_time = false;
  // Virtual time: the link figures the schedule was compiled with (the plan's), by which a
  // message is timed as the schedule's link model has it (schedule.h): a Recv may start once the
  // message has wholly arrived (its sender's start + schedule::HopTimeNs over the incoming link),
  // a Forward cut-through once its head is in (one hop latency) unless its tail would then leave
  // before it has arrived. The links' own latency and bandwidth are the endpoints' LinkSpecs.
  partition::LinkCostParams link_params;
};

// What one Run did on this chip.
struct RunReport {
  int64_t steps = 0;          // steps executed (the stop step not counted)
  int64_t prefill_steps = 0;  // of them, prefill steps
  int64_t tokens = 0;         // the sampling chip: tokens drawn
  // Paced or virtual-time runs: every instruction's start behind its scheduled start.
  LagHistogram lag;
};

// What ChipSetup::prefill's programs are (schedule/queries.h).
using schedule::PrefillPass;

class ChipRunner {
 public:
  // `endpoints[i]` is the chip's end of schedule::ProgramLinks(setup.program)[i] (what
  // Transport::OpenChip returns for those links, in that order). Throws Error (kInvalidInput)
  // naming the chip for a program that uses a link without an endpoint, a shard of another stage or
  // rank, or a program this runner cannot execute.
  ChipRunner(ChipSetup setup, std::vector<std::unique_ptr<transport::Endpoint>> endpoints);
  ~ChipRunner();
  ChipRunner(const ChipRunner&) = delete;
  ChipRunner& operator=(const ChipRunner&) = delete;

  // Executes the program once for `step`. Returns the results on the chip that samples (last
  // stage, rank 0), ordered by slot; empty elsewhere. Throws Error naming chip, link and step on
  // any transport failure, and kInvalidInput for a step the runner cannot take (a slot out of
  // range, twice in one step, a position that does not continue the slot's sequence).
  std::vector<control::SlotResult> RunStep(const control::Step& step);

  // Runs step after step on its own until a step of kind stop (run_control.h), with no control
  // message per step: every step's kind comes from the chip's data (or, on rank 0 of stage 0, from
  // its StepPlanner), stage 0 takes each slot's next token from the link message the sampling
  // chip sends, and the sampling chip reports tokens through `control`. Consecutive decode steps
  // run as the modulo schedule has them: instruction i of step k at start_i + k x repeat_ns, in
  // that order (Unroll's: ties go to the earlier step, then program order), so a step's first
  // slots start before the last tokens of the step before are back; a prefill step runs alone,
  // after the step before it ends on this chip and before the next starts. Messages are taken from
  // a link in arrival order whatever their step and held until their instruction. Throws Error
  // naming chip, step, instruction and link on any failure, and when a step's kind is not known
  // by the time it must start (a lookahead too short for the schedule).
  RunReport Run(RunControl& control);

  // How the next Run keeps time (ChipSetup::pace, epoch_ns, virtual_time): a run start message
  // says, after the runner was built. Throws Error (kInvalidInput) for a pace that is neither 0
  // nor >= 1.
  void SetTiming(double pace, int64_t epoch_ns, bool virtual_time);

  // Closes every endpoint (end-of-stream to the peers). Idempotent.
  void Close();

  int chip() const;
  // Number of pipeline slots (the program's sequences).
  int32_t slots() const;

 private:
  struct Impl;
  friend class SelfClockedRun;  // Run's state (self_clocked.cc)
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::worker
