// The static global schedule: every instruction on every chip and every transfer on every link
// direction, decided before the first token.
//
// Compile() turns a partition::Plan into one program per chip (an ordered list of compute, reduce,
// send, receive and forward instructions with planned start/end times in integer ns) and one
// reservation table per link direction used. It is a pure function: the same plan, model,
// topology and options give the same schedule, bit for bit (no clock, no hashing, no randomness).
// It is the compact schedule (compact.h: CompileCompact, which compiles one pass of one sequence
// slot per phase and the pattern by which it repeats) written out: explicitly, N tokens x M
// sequences — memory linear in chips x ops per token x N x M — or, with ScheduleOptions::modulo,
// one period of M sequence slots plus a repeat rule. Workers run these explicit programs.
//
// What is compiled (decode tokens; prefill, optionally, as bucketed, chunked passes before the
// first decode token):
//   - every op of the cost model (partition::LayerOps/EmbeddingOps/HeadOps) on every chip of its
//     stage's TP group, with the cost model's per-op time (TimeOp) as its duration;
//   - after each op that leaves a partial sum (allreduce_bytes > 0, tp > 1) an all-reduce as
//     point-to-point steps, the algorithm partition::ChooseAllReduce picks (the one the
//     partitioner priced): when every pair of the group is joined by a link, one-shot (every
//     rank sends its whole partial to every peer and combines all of them: one step) if the op
//     allows it and it is no slower, else direct exchange (reduce-scatter then all-gather, one
//     step each); over whole nodes whose all-reduces combine whole partials, hierarchical
//     (reduce-scatter in each node, node sums to the same place in the other nodes, all-gather
//     in each node: 3 steps); a ring in rank order otherwise; each step ends with a Reduce of
//     LinkCostParams::collective_step_overhead_ns that adds the received partials in rank order
//     (a fixed reduction order, so results are bit-reproducible);
//   - after sampling with tp > 1, a gather of each rank's (value, index) pair to rank 0, which
//     picks the token (a Reduce);
//   - the activation from a stage to the next once per receiving node (a receiver one hop from a
//     sending rank gets it directly; each other node of receivers gets it once, at its rank
//     nearest a sender, which then sends it to the node's others: few links join two nodes),
//     and the sampled token from the last stage's rank 0 to every rank of stage 0 (the next
//     token of that sequence), routed over minimal routes (breadth first over
//     Topology::Neighbors, ports in order: deterministic). Every hop is reserved; intermediate
//     chips Forward at their planned time.
// The link model: a Send or Forward holds its link direction while its payload goes onto the
// wire (bytes / (bandwidth x link_efficiency)); the message has arrived one hop latency after
// that (HopTimeNs after the start), so messages pipeline on a direction. Forwarding is
// cut-through: the next hop starts when the message's head has arrived, so a route of h equal
// hops takes h latencies + one payload; the cost model (partition::TransferTimeNs) prices hops
// store-and-forward, which bounds this from above.
// Resources: one compute unit per chip (Compute and Reduce run one at a time), one payload at a
// time per link direction. Each is reserved first-fit on a table folded modulo the slot stride
// (the earliest gap at or after the instruction's inputs are ready that every copy finds free),
// so sequence slot m runs the same pass m strides later and the decode steady state repeats
// every slots x stride (the cycle).
// Sequences are independent; one sequence has one token in flight.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/partition/cost_model.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/topology.h"

namespace lockstep::schedule {

using topology::ChipId;
using topology::LinkId;

enum class InstrKind : uint8_t {
  kCompute,  // one op of the cost model on this chip's shard (compute unit)
  kReduce,   // one collective step: add / assemble received chunks (compute unit)
  kSend,     // start a message on an outgoing link direction
  kRecv,     // a message arrives over an incoming link (zero duration)
  kForward,  // an intermediate chip passes a message on (incoming link -> outgoing link)
};
std::string_view InstrKindName(InstrKind kind);

// What an instruction belongs to, beyond its kind.
enum class Tag : uint8_t {
  kOp,  // a Compute: `op` names the op kind
  kReduceScatter,
  kAllGather,
  kGather,      // sampling candidates to rank 0
  kActivation,  // stage -> next stage
  kToken,       // last stage -> first stage: the sampled token
  kAllReduce,   // one-shot all-reduce: a whole partial to every peer (last: the wire's order)
};
std::string_view TagName(Tag tag);

struct Instruction {
  InstrKind kind = InstrKind::kCompute;
  Tag tag = Tag::kOp;
  partition::OpKind op = partition::OpKind::kEmbedding;  // Compute only
  // The step: which token of which sequence, in which stage and decoder layer (-1 = none).
  int32_t token = 0;  // -1 = the prompt (prefill)
  int32_t sequence = 0;
  int32_t stage = 0;
  int32_t layer = -1;
  // Planned times. Compute/Reduce: end = start + duration_ns. Send/Forward: end = start + the
  // time `bytes` hold `link` (the payload onto the wire); the message arrives HopTimeNs after the
  // start. Recv: start = end >= arrival.
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  int64_t duration_ns = 0;  // Compute/Reduce only
  int64_t bytes = 0;        // message size (Send/Recv/Forward)
  // Outgoing hop (Send, Forward): the link, the chip at its far end and the message id that the
  // far end's Recv/Forward names as in_msg. -1 when unused.
  LinkId link = -1;
  ChipId peer = -1;
  int64_t msg = -1;
  // Incoming hop (Recv, Forward).
  LinkId in_link = -1;
  ChipId in_peer = -1;
  int64_t in_msg = -1;
  // Instructions of the same program (indices, all earlier) whose results this one needs.
  std::vector<int32_t> deps;

  friend bool operator==(const Instruction&, const Instruction&) = default;
};

struct ChipProgram {
  ChipId chip = 0;
  int stage = -1;  // -1: the chip only forwards
  int rank = -1;   // rank in its stage's TP group
  // SRAM held for the whole run: weights + KV cache + the stage's op buffers (from the plan).
  int64_t resident_bytes = 0;
  std::vector<Instruction> instructions;  // in program order = planned start order

  friend bool operator==(const ChipProgram&, const ChipProgram&) = default;
};

struct Reservation {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  int64_t msg = 0;

  friend bool operator==(const Reservation&, const Reservation&) = default;
};

// One direction of one link: transfers from `from` to `to`, sorted by start.
struct LinkTable {
  LinkId link = 0;
  ChipId from = 0;
  ChipId to = 0;
  std::vector<Reservation> reservations;

  friend bool operator==(const LinkTable&, const LinkTable&) = default;
};

struct ScheduleOptions {
  // Decode tokens per sequence to compile.
  int64_t tokens = 1;
  // Sequences (micro-batches of plan.workload.batch) in flight; 0 = enough to fill the pipeline:
  // ceil(one token's latency / slowest stage incl. its send), from the plan's stage times.
  int64_t sequences = 0;
  // Chip effective figures; unset = partition::CostParamsFor(chip), as the partitioner uses.
  std::optional<partition::ChipCostParams> chip_params;
  partition::LinkCostParams link_params;
  // Also compile each sequence's prompt before its first decode token. The prompt is padded to
  // its bucket (PromptBucket) and prefilled in chunks of at most `prefill_chunk` tokens, each a
  // pass of the cost model's prefill ops through every stage (tokens -chunks .. -1, "prefill");
  // chunk c+1 enters a stage after chunk c has left it, so chunks pipeline like tokens, and only
  // the last chunk runs the LM head and sends the first token back to stage 0. A chunk's
  // activations are batch x chunk x hidden wide; the compiler checks that each stage's
  // resident bytes plus its largest prefill op's activations fit the chip's SRAM (kCannotFit
  // naming the stage and a chunk size that would fit otherwise) — the partitioner's memory
  // check counts decode activations only. Attention in a chunk is costed over the chunk's own
  // tokens (its reads of earlier chunks' KV cache are not timed).
  bool prefill = false;
  // Prompt length for the prefill pass; 0 = plan.prompt_len (or the workload context).
  int64_t prompt_len = 0;
  // Prompt-length buckets, ascending; empty = powers of two from 16 (16, 32, 64, ...).
  std::vector<int64_t> prompt_buckets;
  // Most tokens per prefill chunk; bounds prefill activation memory. Must be >= 1.
  int64_t prefill_chunk = 2048;
  // Modulo form: one period — every sequence slot's one decode token (DecodePeriod) — and a
  // repeat rule (GlobalSchedule::repeat_ns = the cycle, iterations = `tokens`), so the
  // schedule's size does not grow with the token count. Decode only (prefill must be false).
  // The compact form (CompileCompact) ignores it: it is always one pass plus its pattern.
  bool modulo = false;
};

// The padded prompt length compiled for `prompt_len`: the smallest bucket >= it; beyond the
// largest bucket, the next multiple of the largest. Empty buckets = powers of two from 16.
// Throws Error (kInvalidInput) for prompt_len < 1 or buckets that are not ascending and >= 1.
int64_t PromptBucket(int64_t prompt_len, const std::vector<int64_t>& buckets);

struct GlobalSchedule {
  std::string model;
  std::string topology;
  int64_t tokens = 0;
  int64_t sequences = 0;
  int64_t batch = 1;  // sequences per micro-batch (plan.workload.batch)
  int stages = 0;
  // Planned figures: the first token of sequence 0 through every stage and back; the time one
  // sequence waits between consecutive tokens in steady state (the last compiled pair) and that
  // divided by the sequences in flight (the modulo period); the end of the last instruction.
  int64_t token_latency_ns = 0;
  int64_t cycle_ns = 0;
  int64_t period_ns = 0;
  int64_t makespan_ns = 0;
  // Prefill (when compiled): the prompt length and when sequence 0's first token is back at
  // stage 0, i.e. its time to first token; the prefill pass's compute with zero communication.
  bool prefill = false;
  int64_t prompt_len = 0;
  int64_t prompt_bucket = 0;   // the padded length compiled (PromptBucket)
  int64_t prefill_chunks = 0;  // chunks of prefill_chunk_tokens each
  int64_t prefill_chunk_tokens = 0;
  // The largest of resident bytes + one prefill op's activations over the stage chips: the
  // peak the prefill adds to memory (the validator checks message buffers on top).
  int64_t prefill_peak_bytes = 0;
  int64_t time_to_first_token_ns = 0;
  int64_t prefill_compute_path_ns = 0;
  // Sum over stages of one rank's compute and reduce durations for one token: the pass with zero
  // communication (a lower bound of token latency), and the slowest stage's share (a lower bound
  // of the period).
  int64_t compute_path_ns = 0;
  int64_t slowest_stage_compute_ns = 0;
  // Modulo form (ScheduleOptions::modulo): the programs are one period, run `iterations` times,
  // iteration k shifted by k x repeat_ns with token k (and message ids offset by k x
  // msg_stride). 0 iterations = the explicit form: the programs are the whole run.
  int64_t iterations = 0;
  int64_t repeat_ns = 0;
  int64_t msg_stride = 0;
  std::vector<ChipProgram> programs;  // sorted by chip id; only chips with instructions
  std::vector<LinkTable> links;       // sorted by (link, from)

  size_t instruction_count() const;

  friend bool operator==(const GlobalSchedule&, const GlobalSchedule&) = default;
};

// Compiles `plan` (made for `spec` on `topo`): Expand(CompileCompact(...), tokens), or with
// `modulo` DecodePeriod(CompileCompact(...), tokens). Throws Error (kInvalidInput) when the plan
// does not belong to the topology (a chip out of range or down), tokens < 1 or sequences < 0, and
// Error (kCannotFit) when two chips that must talk have no route.
GlobalSchedule Compile(const partition::Plan& plan, const partition::ModelSpec& spec,
                       const topology::Topology& topo, const ScheduleOptions& options = {});

// Compiles a self-contained plan with the model, topology and cost figures it carries
// (plan.spec, PlanTopology(plan), plan.chip_params and plan.link_params replace the options'
// chip_params and link_params), so the schedule uses exactly the plan's figures. Validate and
// Simulate it with plan.link_params.
GlobalSchedule Compile(const partition::Plan& plan, const ScheduleOptions& options = {});

// The explicit form of a modulo schedule's first `iterations` periods (each program the merge
// of the shifted copies in planned start order; a sequence's first instructions on a chip in
// iteration k+1 depend on its last one there in iteration k). An explicit schedule is
// returned unchanged. This is what the simulator runs; its size grows with `iterations`.
GlobalSchedule Unroll(const GlobalSchedule& schedule, int64_t iterations);

// Transfer time of `bytes` over one hop of `link`: latency + ceil(bytes / (bandwidth x
// link_efficiency)), integer ns (128-bit intermediate, no overflow): from a Send's or Forward's
// start until the message has wholly arrived.
int64_t HopTimeNs(const topology::Link& link, int64_t bytes,
                  const partition::LinkCostParams& params);

// The schedule as one JSON object: summary figures, every program (instructions with their
// planned times, deps and messages) and every link direction's reservations. Deterministic.
std::string ScheduleToJson(const GlobalSchedule& schedule);

// "token 3 sequence 1 stage 2 layer 5 mlp compute" ("prefill sequence 0 ..." for the prompt):
// the step an instruction belongs to, for messages.
std::string DescribeStep(const Instruction& instr);

}  // namespace lockstep::schedule
