// The per-op cost model: what each operation of a transformer costs (FLOPs and bytes) for a
// workload, and how long it takes on a chip and on links.
//
// Two layers, kept apart so each can be tested on its own:
//   1. Counting (exact integers): ModelOps()/LayerOps() list every op of a forward step —
//      embedding, the two RMSNorms, QKV, RoPE, attention over the context, output projection,
//      residual adds, MLP or MoE experts, final norm, LM head, sampling — with FLOPs, weight
//      bytes (resident and read), activation bytes, KV bytes and the bytes it contributes to a
//      tensor-parallel all-reduce, for one chip of a tensor-parallel group of degree `tp`.
//   2. Timing (integer ns): OpTime() turns an op into time on a ChipSpec with ChipCostParams
//      (compute at peak x efficiency, weight streaming rate, memory bandwidth, fixed per-op
//      overhead); TransferTimeNs()/AllReduceTimeNs() time links with LinkCostParams.
// Every constant is a named field with a default and a comment naming its source. Pure
// functions of their arguments; thread-safe. Floating point appears only inside a single
// division and is rounded up to whole ns, so results are reproducible.
//
// Calibration: the lpu-v1 effective figures are fitted so that the partitioner's latency plan
// for Llama-2-70B, INT8, 4k context on 576 chips predicts Groq's published ~300 tokens/s per
// user within +-20%; LpuV1CostParams() holds them with their reasoning.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/common/dtype.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/topology/chip_spec.h"

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
  // Fixed cost of every op: issue, stream setup and pipeline fill of the functional units
  // before the first result. 200 ns = 180 cycles at 900 MHz; uncalibrated.
  int64_t op_overhead_ns = 200;

  friend bool operator==(const ChipCostParams&, const ChipCostParams&) = default;
};

// The lpu-v1 figures, calibrated (issue #3, "Calibration") against Groq's published end-to-end
// result: Llama-2-70B, INT8, 4k context, on 576 chips (8 racks), ~300 tokens/s per user, i.e.
// ~3.3 ms per token. Only the weight streaming rate is fitted; everything else is a published
// figure or a stated assumption:
//   - vector_ops: the TSP vector unit has 16 ALUs on each of 320 lanes at 900 MHz = 4.6 Tops/s
//     (Abts et al., "Think Fast: A Tensor Streaming Processor", ISCA 2020).
//   - weight_stream: Groq publishes no weight-install rate. At batch 1 the matrix units use each
//     weight once, so the rate at which weights enter them bounds every decode product. The
//     partitioner's latency plan for that setup is ~41 stages of TP 8 with 2 layers each (a
//     layer is 856 MB at INT8, 107 MB per chip), run one after another; per stage ~12 us goes
//     to per-op overhead, four direct all-reduces and the send to the next stage. 3.3 ms / 41
//     stages - 12 us = ~69 us to stream 214 MB per chip, i.e. ~3.1 TB/s. We use 3.2 TB/s
//     (~3.6 KB per 900 MHz cycle, about eleven 320-byte stream vectors per cycle, 4% of the
//     80 TB/s marketing SRAM figure), which predicts ~314 tokens/s per user
//     (partitioner_test.cc: CalibratedAgainstGroqLlama70b checks +-20%).
//   - op_overhead and matrix_efficiency: the generic defaults above, not fitted.
// Calibrate here, not on the outputs.
ChipCostParams LpuV1CostParams();
// LpuV1CostParams() for an lpu-v1 spec, the generic defaults otherwise.
ChipCostParams CostParamsFor(const topology::ChipSpec& chip);

enum class Bound { kOverhead, kCompute, kWeightStream, kMemory };
std::string_view BoundName(Bound bound);  // "overhead", "compute", "weight_stream", "memory"

struct OpTime {
  int64_t ns = 0;          // overhead + the largest of the three terms below
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
  // Extra time per step of a collective: adding the received chunk and the scheduled slack
  // between steps. 100 ns = 90 cycles; uncalibrated.
  int64_t collective_step_overhead_ns = 100;

  friend bool operator==(const LinkCostParams&, const LinkCostParams&) = default;
};

// One point-to-point transfer of `bytes` over `hops` links of this bandwidth and latency,
// cut-through (the payload serializes once; each hop adds its latency).
int64_t TransferTimeNs(int64_t bytes, int hops, int64_t link_bandwidth_bytes_per_s,
                       int64_t link_latency_ns, const LinkCostParams& params);

// All-reduce of `bytes` (each member's full partial sum) across `group` chips.
// One-shot (group fully connected): a single step in which every chip sends its whole partial
// to each peer over its own link in parallel, and every chip combines all of them itself: one
// link latency, `bytes` on each link. Direct (group fully connected, one link per pair, e.g.
// one node): reduce-scatter then all-gather, each a single step in which every chip sends
// bytes/group to each peer: two latencies, 2 x bytes/group on each link. Ring (otherwise):
// 2 x (group - 1) steps of bytes/group each. Every step also costs the collective step
// overhead. group <= 1 costs nothing.
enum class AllReduceAlgorithm { kOneShot, kDirect, kRing };
int64_t AllReduceTimeNs(int64_t bytes, int group, AllReduceAlgorithm algorithm,
                        int64_t link_bandwidth_bytes_per_s, int64_t link_latency_ns,
                        const LinkCostParams& params);
// Steps of a collective in a row (1, 2 or 2 x (group - 1)); 0 for group <= 1.
int64_t AllReduceSteps(AllReduceAlgorithm algorithm, int group);

// Whether the all-reduce after `op` may be one-shot: every rank can combine all outputs from
// the whole partials. True for the vocab-parallel embedding and for row-parallel o / down
// projections; a column-parallel one (RowParallelProjection false) needs its reduce-scatter,
// each rank holding only its own outputs' weights.
bool OneShotAllowed(const ModelSpec& spec, int tp, OpKind op);

// The all-reduce the schedule runs (the partitioner prices the same): ring when the group is
// not fully connected (`direct` false); else one-shot when allowed and no slower than
// reduce-scatter + all-gather (small partials: latency-bound), else direct. Integer times, so
// every caller decides the same.
AllReduceAlgorithm ChooseAllReduce(int64_t bytes, int group, bool direct, bool one_shot_allowed,
                                   int64_t link_bandwidth_bytes_per_s, int64_t link_latency_ns,
                                   const LinkCostParams& params);

}  // namespace lockstep::partition
