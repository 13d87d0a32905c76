// The per-op cost model: what each operation of a transformer costs (FLOPs and bytes) for a
// workload, and how long it takes on a chip and on links.
//
// Two layers, kept apart so each can be tested on its own:
//   1. Counting (exact integers): ModelOps()/LayerOps() list every op of a forward step —
//      embedding, the two RMSNorms, QKV, RoPE, attention over the context, output projection,
//      residual adds, MLP or MoE experts, final norm, LM head, sampling — with FLOPs, weight
//      bytes (resident and read), activation bytes, KV bytes and the bytes it contributes to a
//      tensor-parallel all-reduce, for one chip of a tensor-parallel group of degree `tp`.
//   2. Timing (integer ns): OpTime() turns an op into time on a ChipSpec with ChipCostParams:
//      the largest of compute (peak x efficiency), weight streaming and memory traffic, plus
//      the op's fixed latency (per-op overhead, one pipeline fill of the matrix or vector units
//      per dependent pass through them, the per-layer synchronization on a layer's first op);
//      TransferTimeNs()/AllReduceTimeNs() time links with LinkCostParams (per hop latency,
//      serialization, per collective step overhead).
// Every fixed term is charged per op, per hop or per collective step, never per stage or per
// token, so the schedule compiler (which charges TimeOp per op, HopTimeNs per hop and the
// collective step overhead per step) prices exactly what the partitioner prices. Every
// constant is a named field with a default and a comment naming its source. Pure functions of
// their arguments; thread-safe. Floating point appears only inside a single division and is
// rounded up to whole ns, so results are reproducible.
//
// Calibration: LpuV1CostParams() holds the lpu-v1 figures with their sources: every fixed term
// is a cited figure or a derivation; the one fitted constant, the weight streaming rate, is
// fitted to Groq's Llama-2-70B point (INT8, 4k context, 576 chips, ~300 tokens/s per user).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/common/dtype.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/topology.h"

namespace lockstep::partition {

enum class Phase { kDecode, kPrefill };
std::string_view PhaseName(Phase phase);  // "decode", "prefill"
std::optional<Phase> ParsePhase(std::string_view name);

struct Workload {
  Phase phase = Phase::kDecode;
  // Sequences processed together in one step.
  int64_t batch = 1;
  // Decode: tokens each sequence attends to, the new one included (its KV cache length after
  // the step). Prefill: the prompt length; the step processes batch x context tokens.
  int64_t context = 4096;
  // Element type of weights, activations and the KV cache.
  Dtype dtype = Dtype::kFp16;

  // Tokens that pass through the decoder layers in one step.
  int64_t tokens() const { return phase == Phase::kDecode ? batch : batch * context; }

  friend bool operator==(const Workload&, const Workload&) = default;
};

enum class OpKind {
  kEmbedding,
  kAttentionNorm,
  kQkvProjection,
  kRope,
  kAttention,
  kOutputProjection,
  kAttentionResidual,
  kMlpNorm,
  kMlp,  // gated MLP, or for MoE the router plus the experts a step touches
  kMlpResidual,
  kFinalNorm,
  kLmHead,
  kSampling,
};
std::string_view OpKindName(OpKind kind);  // "embedding", "attention_norm", "qkv", ...

// Which functional unit bounds an op's arithmetic.
enum class Unit {
  kMatrix,  // matrix products: the matrix units, fed by streamed weights (or KV)
  kVector,  // elementwise work: norms, RoPE, residuals, sampling
  kMemory,  // pure data movement: the embedding gather
};

// One op for one chip of a tensor-parallel group, for one step of the workload.
struct OpCost {
  OpKind kind = OpKind::kEmbedding;
  Unit unit = Unit::kVector;
  int64_t layer = -1;  // decoder layer index; -1 for embedding and head ops
  int64_t flops = 0;   // 2 per multiply-add; elementwise ops counted per element operation
  // Weights the chip holds for this op (memory planning) and reads per step (timing). They
  // differ for the embedding, whose step reads only the looked-up rows.
  int64_t weight_bytes = 0;
  int64_t weight_read_bytes = 0;
  // Activations read and written per step (inputs + outputs).
  int64_t activation_bytes = 0;
  // KV cache read + written per step (attention only), and the cache held for the workload
  // (batch x context tokens of this chip's KV heads).
  int64_t kv_bytes = 0;
  int64_t kv_resident_bytes = 0;
  // Bytes of partial sums this chip contributes to the all-reduce that must follow (tp > 1):
  // the output projection, the MLP down projection and the vocab-parallel embedding. The LM
  // head instead gathers one (value, index) pair per sequence from each chip for sampling.
  int64_t allreduce_bytes = 0;
  int64_t gather_bytes = 0;
  // Dependent passes through the functional units: each pays one pipeline fill
  // (ChipCostParams::matrix_fill_ns / vector_fill_ns) before its first result. E.g. attention
  // is QK^T (matrix), softmax (two vector passes: max and exponent-sum, then normalize), PV
  // (matrix); a gated MLP is gate+up (matrix), SiLU x up (vector), down (matrix).
  int64_t matrix_passes = 0;
  int64_t vector_passes = 0;
};

// Empty when `tp` can shard the model; otherwise why not (heads, KV heads, intermediate size).
// KV heads may be fewer than tp when tp is a multiple of them: each is then replicated.
// The vocabulary is padded to a multiple of tp, so it never blocks a degree.
std::string TensorParallelProblem(const ModelSpec& spec, int tp);

// Contraction elements per chunk of the canonical reduction order (model/kernels.h): a split of
// a projection's contraction reproduces the reference's bits only at whole chunks.
inline constexpr int64_t kReductionChunk = 64;

// Whether the o (mlp = false) or down (mlp = true) projection of a stage of degree `tp` is
// row-parallel (degree 1, or every rank's contraction slice a whole number of 64-element chunks)
// or column-parallel (split by output). Every rank of the stage decides the same.
bool RowParallelProjection(const ModelSpec& spec, int tp, bool mlp);

// The ops of decoder layer `layer`, in execution order, for one chip of a TP group of `tp`.
// Throws Error (kInvalidInput) for a bad workload (batch/context <= 0) or a tp that
// TensorParallelProblem rejects.
std::vector<OpCost> LayerOps(const ModelSpec& spec, const Workload& w, int tp = 1,
                             int64_t layer = 0);
// The embedding (first op of a step).
std::vector<OpCost> EmbeddingOps(const ModelSpec& spec, const Workload& w, int tp = 1);
// Final norm, LM head and sampling. Prefill computes logits only for each sequence's last token.
std::vector<OpCost> HeadOps(const ModelSpec& spec, const Workload& w, int tp = 1);
// Embedding, every layer, head: the whole step.
std::vector<OpCost> ModelOps(const ModelSpec& spec, const Workload& w, int tp = 1);

// Sums of a list of ops.
OpCost SumOps(const std::vector<OpCost>& ops);

// Effective figures of a chip: how much of its datasheet it reaches. Defaults are generic
// fractions; LpuV1CostParams() holds the lpu-v1 figures and is where calibration goes.
struct ChipCostParams {
  // Fraction of the datasheet matrix peak (ChipSpec::peak_ops) a product reaches when its
  // matrix units are fully fed (prefill, large batch). 0.8 is the usual figure for large
  // dense products on accelerators with well-tiled kernels; uncalibrated.
  double matrix_efficiency = 0.8;
  // Rate at which weights (and, in attention, cached K/V) stream from on-chip memory into the
  // matrix units, bytes/s; 0 = ChipSpec::memory_bandwidth_bytes_per_s x weight_stream_fraction.
  // At batch 1 a matrix-vector product uses each weight once, so this rate, not peak TOPS,
  // bounds it — the main reason datasheet peaks overpredict decode speed several-fold.
  int64_t weight_stream_bytes_per_s = 0;
  double weight_stream_fraction = 0.05;
  // Elementwise throughput of the vector units, ops/s; 0 = 2% of the chip's fp16 peak (a
  // matrix engine's vector side is typically one to a few percent of its matrix rate).
  int64_t vector_ops_per_s = 0;
  // Fraction of ChipSpec::memory_bandwidth_bytes_per_s that activation and KV traffic reach.
  double memory_efficiency = 0.8;
  // Fixed cost of every op (issue, dispatch) beyond its pipeline fills. The generic default,
  // 200 ns = 180 cycles at 900 MHz, stands in for fills on chips that give none below;
  // uncalibrated.
  int64_t op_overhead_ns = 200;
  // Pipeline fill of one dependent pass through the matrix / vector units (OpCost's
  // matrix_passes / vector_passes): the time from the operands leaving memory to the first
  // result back. 0 = none (the generic default folds it into op_overhead_ns).
  int64_t matrix_fill_ns = 0;
  int64_t vector_fill_ns = 0;
  // Synchronization every decoder layer pays, charged on its first op (the attention norm):
  // e.g. a barrier or deskew between the chips of a stage. 0 = none.
  int64_t layer_sync_ns = 0;

  friend bool operator==(const ChipCostParams&, const ChipCostParams&) = default;
};

// The lpu-v1 figures (issue #21). Fixed terms, each a cited figure or a derivation (cycles at
// the 900 MHz clock; TSP structure from Abts et al., "Think Fast: A Tensor Streaming
// Processor", ISCA 2020: 20 superlanes, instructions reaching each superlane one cycle after the
// previous, streams moving one functional slice per cycle, 44 MEM slices per hemisphere between
// the central VXM and the MXM at the edge, 16 ALUs per lane in the VXM):
//   - matrix_fill 150 ns: an operand crosses <= 46 slices (44 MEM + SXM + edge) to the MXM, the
//     result 46 back, + 20 cycles of superlane stagger, + ~20 cycles for the MXM's sum of 320
//     products (a pipelined tree of log2(320) ~ 9 adder levels; not published, estimated):
//     132 cycles = 147 ns.
//   - vector_fill 140 ns: <= 44 slices in and out of the VXM + 20 stagger + a chain of up to 16
//     ALUs: 124 cycles = 138 ns.
//   - op_overhead 0: an instruction issues in one cycle; its latency is the fills above.
//   - layer_sync 0: a software-scheduled network has no per-layer barrier (chips are aligned
//     once per program and kept aligned by the runtime deskew, Abts et al., ISCA 2022); each
//     exchange's alignment is the collective step overhead (LpuV1LinkCostParams).
//   - vector_ops: 16 ALUs x 320 lanes x 900 MHz = 4.6 Tops/s (ISCA 2020).
//   - matrix_efficiency 0.8, memory_efficiency 0.8: the generic defaults (they bound prefill
//     and activations, not the decode point fitted here).
// Fitted: weight_stream_bytes_per_s, the rate weights (and cached K/V) enter the matrix units at
// batch 1 (Groq publishes none), to Groq's Llama-2-70B INT8 4k-context point on 576 chips,
// ~300 tokens/s per user (the latency plan: ~40 stages of TP 8 with 2 layers each); the fit's
// arithmetic is beside the value in cost_model.cc.
ChipCostParams LpuV1CostParams();
// LpuV1CostParams() for an lpu-v1 spec, the generic defaults otherwise; then the figures the
// spec carries (ChipSpec::cost_params, see cost_params.h) on top. Throws Error (kInvalidInput)
// naming the spec and figure for a bad one.
ChipCostParams CostParamsFor(const topology::ChipSpec& chip);

enum class Bound { kOverhead, kCompute, kWeightStream, kMemory };
std::string_view BoundName(Bound bound);  // "overhead", "compute", "weight_stream", "memory"

struct OpTime {
  int64_t ns = 0;          // fixed_ns + the largest of the three terms below
  int64_t fixed_ns = 0;    // op overhead + pipeline fills + layer synchronization
  int64_t compute_ns = 0;  // flops at the unit's effective rate
  int64_t weight_ns = 0;   // weight (and attention KV) bytes at the streaming rate
  int64_t memory_ns = 0;   // activation (and non-matrix KV) bytes at effective bandwidth
  Bound bound = Bound::kOverhead;
};

// Time of one op on `chip`. Throws Error (kInvalidInput) naming the chip and dtype when the
// chip has no matrix compute for `dtype` (lpu-v1 has fp16 and int8 only).
OpTime TimeOp(const OpCost& op, Dtype dtype, const topology::ChipSpec& chip,
              const ChipCostParams& params);

struct LinkCostParams {
  // Payload fraction of the raw link rate after framing, FEC and flow-control words. 0.9 is a
  // typical 64b/66b + FEC + header budget for SerDes links; uncalibrated.
  double link_efficiency = 0.9;
  // Latency of one hop; < 0 = the link's own latency_ns (lpu-v1: 600 ns, see ChipSpec).
  int64_t hop_latency_ns = -1;
  // Extra time per step of a collective: adding the received chunk. 140 ns: on lpu-v1 one VXM
  // pass (the vector fill, LpuV1CostParams); the generic default too, so a schedule compiled
  // without the plan's figures prices collectives as the plan did.
  int64_t collective_step_overhead_ns = 140;

  friend bool operator==(const LinkCostParams&, const LinkCostParams&) = default;
};

// The lpu-v1 link figures (issue #21):
//   - hop latency: the link's own (ChipSpec::link_latency_ns, 600 ns: Groq's "< 3 us end to end
//     over <= 5 hops" for 10,440 chips, Abts et al. ISCA 2022, divided by 5 — an upper bound).
//     What it is made of: RS(528,514) FEC holds a 5,280-bit codeword before it can correct it,
//     51 ns at 4 x 25.78 Gb/s, ~100 ns with the decode; SerDes and PCS both ends (serialize,
//     clock recovery, 64b/66b, deskew of 4 lanes) ~100 ns; ~2 m of cable ~10 ns; the rest
//     (~390 ns) the forwarding chip's path from its receiving to its sending link through its
//     stream registers and the alignment of the scheduled hand-off.
//   - link_efficiency 0.9: 64b/66b (0.970) x RS(528,514) (0.973) x ~5% packet framing = 0.90.
//   - collective_step_overhead 140 ns: one VXM pass adding the received chunk (the vector fill,
//     LpuV1CostParams).
// They are LinkCostParams{}'s defaults.
LinkCostParams LpuV1LinkCostParams();
// LpuV1LinkCostParams() for an lpu-v1 spec, LinkCostParams{} otherwise; then the spec's own
// figures, as CostParamsFor.
LinkCostParams LinkCostParamsFor(const topology::ChipSpec& chip);

// A link time split by what it is made of: hop latencies, serialization of the payload at the
// effective link rate, and fixed per-collective-step overheads. total() is what
// TransferTimeNs/AllReduceTimeNs return.
struct LinkTimeParts {
  int64_t latency_ns = 0;
  int64_t serialization_ns = 0;
  int64_t fixed_ns = 0;
  int64_t total() const { return latency_ns + serialization_ns + fixed_ns; }
};

// What `lockstep run` adds to the compiled schedule's token latency: the runtime's own work per
// decode step that the static schedule does not hold. They model today's runtime, in which the
// coordinator starts every decode step and collects its results (two control messages on the
// step's critical path) and every worker runs a step's bookkeeping; the self-clocked runtime of
// issue #19 removes the control messages, so these are the terms to revisit then. Zero for a
// chip whose runtime is its schedule (lpu-v1).
struct RuntimeCostParams {
  // Control messages in a row on a decode step's critical path (today: the Step out, the
  // result back).
  int64_t control_hops = 0;
  // One control message, one way, through the coordinator's control socket.
  int64_t control_hop_ns = 0;
  // Per decode step: the workers' step bookkeeping (taking the Step, setting up its slots,
  // reporting), done by every worker at once, so paid once per step.
  int64_t step_overhead_ns = 0;
  // Cores the chips' workers share on one host (today's runtime pins chip i to core
  // i mod cores): when a plan uses more chips than this, chips computing at the same time take
  // turns, and a step is at least the compute of all chips over this many cores. 0 = a core per
  // chip.
  int64_t cores = 0;
  // The weight bytes per second the host's cores stream together when each of them runs the
  // decode kernel at once (measured by calibrate --host): cores share one memory, so chips
  // that compute at the same time each get less than ChipCostParams::weight_stream_bytes_per_s.
  // A step is then at least all chips' compute at this rate instead of each chip's own
  // (compute x weight_stream_bytes_per_s / this). 0 = no shared memory (each chip its own).
  int64_t shared_weight_stream_bytes_per_s = 0;

  friend bool operator==(const RuntimeCostParams&, const RuntimeCostParams&) = default;
};

// One point-to-point transfer of `bytes` over `hops` links of this bandwidth and latency,
// store-and-forward as the schedule compiles it (each hop is a reserved transfer of the whole
// payload that a forwarding chip sends on when it has arrived): hops x (latency + bytes at the
// effective rate).
LinkTimeParts TransferTimeParts(int64_t bytes, int hops, int64_t link_bandwidth_bytes_per_s,
                                int64_t link_latency_ns, const LinkCostParams& params);
int64_t TransferTimeNs(int64_t bytes, int hops, int64_t link_bandwidth_bytes_per_s,
                       int64_t link_latency_ns, const LinkCostParams& params);

// All-reduce of `bytes` (each member's full partial sum) across `group` chips.
// One-shot (group fully connected): a single step in which every chip sends its whole partial
// to each peer over its own link in parallel, and every chip combines all of them itself: one
// link latency, `bytes` on each link. Direct (group fully connected, one link per pair, e.g.
// one node): reduce-scatter then all-gather, each a single step in which every chip sends
// bytes/group to each peer: two latencies, 2 x bytes/group on each link. Ring (otherwise):
// 2 x (group - 1) steps of bytes/group each. Hierarchical (a group of whole fully connected
// nodes of `node_size` chips, HierarchicalNodeSize): reduce-scatter inside each node (each rank
// sends bytes/node_size to each node peer), then each rank exchanges its node's sum of its
// segment with the rank of the same place in every other node (routed across the few links
// joining the nodes), then all-gather inside the node: 3 steps of bytes/node_size, one hop, the
// crossing's hops, one hop — instead of a ring's 2 x (group - 1) steps. Every step also costs
// the collective step overhead. group <= 1 costs nothing.
enum class AllReduceAlgorithm { kOneShot, kDirect, kRing, kHierarchical };
// `chain_hops`: the links the slowest chain of dependent steps crosses in all (0 = one per
// step). A ring whose neighbours are not all directly linked routes those steps over several
// links, store-and-forward; each rank's step waits for its own previous step and its left
// neighbour's transfer, so the slowest chain runs around the ring through 2 x (group - 1)
// consecutive neighbour pairs (RingChainHops). Hierarchical: 2 + the farthest pair of ranks
// exchanging across nodes (0 = 3). `node_size`: the hierarchical group's chips per node.
LinkTimeParts AllReduceTimeParts(int64_t bytes, int group, AllReduceAlgorithm algorithm,
                                 int64_t link_bandwidth_bytes_per_s, int64_t link_latency_ns,
                                 const LinkCostParams& params, int64_t chain_hops = 0,
                                 int node_size = 0);
int64_t AllReduceTimeNs(int64_t bytes, int group, AllReduceAlgorithm algorithm,
                        int64_t link_bandwidth_bytes_per_s, int64_t link_latency_ns,
                        const LinkCostParams& params, int64_t chain_hops = 0, int node_size = 0);
// The most hops over 2 x (g - 1) consecutive neighbour pairs of a ring of g ranks, where
// `pair_hops[r]` is the routed hops from rank r to rank r + 1 (mod g).
int64_t RingChainHops(const std::vector<int>& pair_hops);
// Steps of a collective in a row (1, 2, 3 or 2 x (group - 1)); 0 for group <= 1.
int64_t AllReduceSteps(AllReduceAlgorithm algorithm, int group);

// Whether the all-reduce after `op` may be one-shot: every rank can combine all outputs from
// the whole partials. True for the vocab-parallel embedding and for row-parallel o / down
// projections; a column-parallel one (RowParallelProjection false) needs its reduce-scatter,
// each rank holding only its own outputs' weights. A layer's o and down are one-shot together
// or not at all: when either is column-parallel, neither is (the runtime orders a layer's
// collectives by their form).
bool OneShotAllowed(const ModelSpec& spec, int tp, OpKind op);

// The all-reduce the schedule runs (the partitioner prices the same): when the group is not
// fully connected (`direct` false), hierarchical when it is whole nodes (`node_size` > 0:
// HierarchicalNodeSize), else ring; when it is, one-shot when allowed and no slower than
// reduce-scatter + all-gather (small partials: latency-bound), else direct. Integer times, so
// every caller decides the same.
AllReduceAlgorithm ChooseAllReduce(int64_t bytes, int group, bool direct, bool one_shot_allowed,
                                   int64_t link_bandwidth_bytes_per_s, int64_t link_latency_ns,
                                   const LinkCostParams& params, int node_size = 0);

// The chips per node of a TP group that may all-reduce hierarchically, 0 when it may not: the
// group's ranks are m >= 2 runs of n >= 2 consecutive ranks, each run all the chips the group has
// in one node and fully linked, the runs in distinct nodes; and every all-reduce of the stage
// combines whole partials (both projections row-parallel, RowParallelProjection), as the
// exchange of node sums across nodes needs. A pure function of the topology, the chips and the
// model, so the compiler, the cost model and the runtime (from the program's shape) agree.
int HierarchicalNodeSize(const ModelSpec& spec, const topology::Topology& topo,
                         const std::vector<topology::ChipId>& chips);

}  // namespace lockstep::partition
