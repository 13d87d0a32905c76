#include "lockstep/partition/cost_model.h"

#include <algorithm>
#include <cmath>

#include "lockstep/common/error.h"

namespace lockstep::partition {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per-chip shard sizes of a tensor-parallel group.
struct Shard {
  int64_t heads = 0;     // query heads on this chip
  int64_t kv_heads = 0;  // KV heads on this chip (1 when replicated)
  int64_t intermediate = 0;
  int64_t vocab = 0;  // rows of the (padded) vocabulary on this chip
};

Shard MakeShard(const ModelSpec& m, int tp) {
  if (tp < 1) throw InvalidInput("tensor-parallel degree must be >= 1, got " + std::to_string(tp));
  if (std::string problem = TensorParallelProblem(m, tp); !problem.empty()) {
    throw InvalidInput(problem);
  }
  Shard s;
  s.heads = m.num_heads / tp;
  s.kv_heads = tp >= m.num_kv_heads ? 1 : m.num_kv_heads / tp;
  s.intermediate = m.intermediate_size / tp;
  s.vocab = CeilDiv(m.vocab_size, tp);
  return s;
}

void CheckWorkload(const Workload& w) {
  if (w.batch < 1)
    throw InvalidInput("workload batch must be >= 1, got " + std::to_string(w.batch));
  if (w.context < 1) {
    throw InvalidInput("workload context must be >= 1, got " + std::to_string(w.context));
  }
}

// Query-key pairs one sequence attends in this step, under an optional sliding window.
int64_t AttendedPairs(const ModelSpec& m, const Workload& w) {
  const int64_t win = m.sliding_window > 0 ? m.sliding_window : w.context;
  if (w.phase == Phase::kDecode) return std::min(w.context, win);
  // Prefill: token i (1-based) attends min(i, window) tokens.
  const int64_t full = std::min(w.context, win);
  return full * (full + 1) / 2 + (w.context - full) * win;
}

// KV positions one sequence keeps after the step.
int64_t KvPositions(const ModelSpec& m, const Workload& w) {
  return m.sliding_window > 0 ? std::min(w.context, m.sliding_window) : w.context;
}

OpCost Norm(OpKind kind, int64_t tokens, int64_t h, int64_t b) {
  OpCost op;
  op.kind = kind;
  op.unit = Unit::kVector;
  // Square, accumulate, scale by 1/rms, multiply by the weight.
  op.flops = 4 * tokens * h;
  op.weight_bytes = op.weight_read_bytes = h * b;
  op.activation_bytes = 2 * tokens * h * b;
  op.vector_passes = 2;  // the sum of squares, then the scaling: the second needs the first
  return op;
}

OpCost Residual(OpKind kind, int64_t tokens, int64_t h, int64_t b) {
  OpCost op;
  op.kind = kind;
  op.unit = Unit::kVector;
  op.flops = tokens * h;
  op.activation_bytes = 3 * tokens * h * b;  // two inputs, one output
  op.vector_passes = 1;
  return op;
}

// Exact integer arithmetic for time: amounts reach 1e21 (flops x ns/s), beyond int64.
__extension__ using Int128 = __int128;

// An effective rate (a datasheet figure x an efficiency) rounded to a whole unit per second.
int64_t EffectiveRate(int64_t rate, double efficiency) {
  return std::max<int64_t>(1, std::llround(static_cast<double>(rate) * efficiency));
}

// Nanoseconds to process `amount` at `per_second`, rounded up.
int64_t CeilNs(int64_t amount, int64_t per_second) {
  if (amount <= 0) return 0;
  const Int128 scaled = static_cast<Int128>(amount) * 1'000'000'000;
  return static_cast<int64_t>((scaled + per_second - 1) / per_second);
}

}  // namespace

std::string_view PhaseName(Phase phase) { return phase == Phase::kDecode ? "decode" : "prefill"; }

std::optional<Phase> ParsePhase(std::string_view name) {
  if (name == "decode") return Phase::kDecode;
  if (name == "prefill") return Phase::kPrefill;
  return std::nullopt;
}

std::string_view OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kEmbedding:
      return "embedding";
    case OpKind::kAttentionNorm:
      return "attention_norm";
    case OpKind::kQkvProjection:
      return "qkv";
    case OpKind::kRope:
      return "rope";
    case OpKind::kAttention:
      return "attention";
    case OpKind::kOutputProjection:
      return "output_projection";
    case OpKind::kAttentionResidual:
      return "attention_residual";
    case OpKind::kMlpNorm:
      return "mlp_norm";
    case OpKind::kMlp:
      return "mlp";
    case OpKind::kMlpResidual:
      return "mlp_residual";
    case OpKind::kFinalNorm:
      return "final_norm";
    case OpKind::kLmHead:
      return "lm_head";
    case OpKind::kSampling:
      return "sampling";
  }
  return "?";
}

std::string TensorParallelProblem(const ModelSpec& m, int tp) {
  const std::string deg = "tensor-parallel degree " + std::to_string(tp);
  if (tp < 1) return deg + " must be >= 1";
  if (m.num_heads % tp != 0) {
    return deg + " does not divide num_attention_heads " + std::to_string(m.num_heads);
  }
  if (m.num_kv_heads % tp != 0 && tp % m.num_kv_heads != 0) {
    return deg + " neither divides nor is a multiple of num_key_value_heads " +
           std::to_string(m.num_kv_heads);
  }
  if (m.intermediate_size % tp != 0) {
    return deg + " does not divide intermediate_size " + std::to_string(m.intermediate_size);
  }
  return {};
}

std::vector<OpCost> LayerOps(const ModelSpec& m, const Workload& w, int tp, int64_t layer) {
  CheckWorkload(w);
  const Shard s = MakeShard(m, tp);
  const int64_t b = DtypeBytes(w.dtype);
  const int64_t t = w.tokens();
  const int64_t h = m.hidden_size;
  const int64_t hd = m.head_dim;
  std::vector<OpCost> ops;

  ops.push_back(Norm(OpKind::kAttentionNorm, t, h, b));

  OpCost qkv;
  qkv.kind = OpKind::kQkvProjection;
  qkv.unit = Unit::kMatrix;
  const int64_t qkv_out = (s.heads + 2 * s.kv_heads) * hd;
  const int64_t qkv_params = h * qkv_out + (m.qkv_bias ? qkv_out : 0);
  qkv.flops = 2 * t * h * qkv_out + (m.qkv_bias ? t * qkv_out : 0);
  qkv.weight_bytes = qkv.weight_read_bytes = qkv_params * b;
  qkv.activation_bytes = t * (h + qkv_out) * b;
  qkv.matrix_passes = 1;  // q, k and v are one product over the same input
  ops.push_back(qkv);

  OpCost rope;
  rope.kind = OpKind::kRope;
  rope.unit = Unit::kVector;
  // Rotating a pair takes 4 multiplies and 2 adds: 3 per element, on q and k.
  const int64_t rotated = t * (s.heads + s.kv_heads) * hd;
  rope.flops = 3 * rotated;
  rope.activation_bytes = 2 * rotated * b;
  rope.vector_passes = 1;
  ops.push_back(rope);

  OpCost attn;
  attn.kind = OpKind::kAttention;
  attn.unit = Unit::kMatrix;
  const int64_t pairs = w.batch * AttendedPairs(m, w);
  // QK^T and probabilities x V (2 x 2 per head dim per pair), softmax (~5 per pair).
  attn.flops = 4 * pairs * s.heads * hd + 5 * pairs * s.heads;
  const int64_t kv_token = 2 * s.kv_heads * hd * b;  // k and v of one token on this chip
  const int64_t new_tokens = t;
  if (w.phase == Phase::kDecode) {
    // Read every attended K/V once, write the new token's.
    attn.kv_bytes = w.batch * AttendedPairs(m, w) * kv_token + new_tokens * kv_token;
  } else {
    // Write the prompt's K/V and read it back once (tiled attention keeps blocks on chip).
    attn.kv_bytes = 2 * w.batch * KvPositions(m, w) * kv_token;
  }
  attn.kv_resident_bytes = w.batch * KvPositions(m, w) * kv_token;
  attn.activation_bytes = 2 * t * s.heads * hd * b + t * kv_token;
  // QK^T; softmax: max and exponent-sum, then normalize; probabilities x V.
  attn.matrix_passes = 2;
  attn.vector_passes = 2;
  ops.push_back(attn);

  OpCost out;
  out.kind = OpKind::kOutputProjection;
  out.unit = Unit::kMatrix;
  out.flops = 2 * t * s.heads * hd * h + (m.o_bias ? t * h : 0);
  out.weight_bytes = out.weight_read_bytes = (s.heads * hd * h + (m.o_bias ? h : 0)) * b;
  out.activation_bytes = t * (s.heads * hd + h) * b;
  out.allreduce_bytes = tp > 1 ? t * h * b : 0;
  out.matrix_passes = 1;
  ops.push_back(out);

  ops.push_back(Residual(OpKind::kAttentionResidual, t, h, b));
  ops.push_back(Norm(OpKind::kMlpNorm, t, h, b));

  OpCost mlp;
  mlp.kind = OpKind::kMlp;
  mlp.unit = Unit::kMatrix;
  const int64_t i = s.intermediate;
  const int64_t expert_params = 3 * h * i + (m.mlp_bias ? 2 * i + h : 0);
  // Gate and up (2 x 2 x h x i), down (2 x i x h); SiLU (~4) and the gating multiply per element.
  const int64_t expert_flops_per_token = 2 * 3 * h * i + 5 * i;
  if (m.is_moe()) {
    const int64_t router = h * m.num_experts;
    // A static schedule must hold every expert and be ready for any routing: a step touches
    // up to min(experts, tokens x experts_per_token) of them.
    const int64_t touched = std::min(m.num_experts, t * m.experts_per_token);
    mlp.flops = 2 * t * router + t * m.experts_per_token * expert_flops_per_token;
    mlp.weight_bytes = (m.num_experts * expert_params + router) * b;
    mlp.weight_read_bytes = (touched * expert_params + router) * b;
    mlp.activation_bytes = 2 * t * h * b + 2 * t * m.experts_per_token * i * b;
    // The router's product; its softmax and top-k (two vector passes); the chosen experts'
    // gate+up, SiLU, down, issued back to back so their fills overlap except the first
    // chain's; the weighted combine of their outputs (one vector pass). Every rank of the TP
    // group routes alike from its copy of the router, so dispatch is local; the combine across
    // ranks is the all-reduce after the op, as for a dense MLP.
    mlp.matrix_passes = 1 + 2;
    mlp.vector_passes = 2 + 1 + 1;
  } else {
    mlp.flops = t * expert_flops_per_token;
    mlp.weight_bytes = mlp.weight_read_bytes = expert_params * b;
    mlp.activation_bytes = 2 * t * h * b + 2 * t * i * b;
    mlp.matrix_passes = 2;  // gate and up together, then down
    mlp.vector_passes = 1;  // SiLU(gate) x up
  }
  mlp.allreduce_bytes = tp > 1 ? t * h * b : 0;
  ops.push_back(mlp);

  ops.push_back(Residual(OpKind::kMlpResidual, t, h, b));
  for (OpCost& op : ops) op.layer = layer;
  return ops;
}

std::vector<OpCost> EmbeddingOps(const ModelSpec& m, const Workload& w, int tp) {
  CheckWorkload(w);
  const Shard s = MakeShard(m, tp);
  const int64_t b = DtypeBytes(w.dtype);
  const int64_t t = w.tokens();
  OpCost emb;
  emb.kind = OpKind::kEmbedding;
  emb.unit = Unit::kMemory;
  emb.weight_bytes = s.vocab * m.hidden_size * b;
  // The schedule is static: plan for every token's row falling in this chip's vocab shard.
  emb.weight_read_bytes = std::min(t, s.vocab) * m.hidden_size * b;
  emb.activation_bytes = t * m.hidden_size * b;
  // Vocab-parallel: chips holding no row for a token contribute zeros; an all-reduce combines.
  emb.allreduce_bytes = tp > 1 ? t * m.hidden_size * b : 0;
  emb.vector_passes = 1;  // the gather streams rows out of memory once
  return {emb};
}

std::vector<OpCost> HeadOps(const ModelSpec& m, const Workload& w, int tp) {
  CheckWorkload(w);
  const Shard s = MakeShard(m, tp);
  const int64_t b = DtypeBytes(w.dtype);
  const int64_t h = m.hidden_size;
  // Only each sequence's last position produces a token (decode: the one new token).
  const int64_t last = w.batch;
  std::vector<OpCost> ops;
  ops.push_back(Norm(OpKind::kFinalNorm, last, h, b));

  OpCost head;
  head.kind = OpKind::kLmHead;
  head.unit = Unit::kMatrix;
  head.flops = 2 * last * h * s.vocab;
  // With tied embeddings the head still holds its own copy: it normally sits on other chips than
  // the embedding.
  head.weight_bytes = head.weight_read_bytes = s.vocab * h * b;
  head.activation_bytes = last * (h + s.vocab) * b;
  head.matrix_passes = 1;
  ops.push_back(head);

  OpCost sample;
  sample.kind = OpKind::kSampling;
  sample.unit = Unit::kVector;
  // Max, subtract, exp, sum, compare over the local logits (~5 each).
  sample.flops = 5 * last * s.vocab;
  sample.activation_bytes = last * s.vocab * b;
  // Each chip's best (value, index) pair per sequence goes to the one that picks the token.
  sample.gather_bytes = tp > 1 ? last * 8 : 0;
  sample.vector_passes = 2;  // the maximum, then the index that holds it
  ops.push_back(sample);
  return ops;
}

std::vector<OpCost> ModelOps(const ModelSpec& m, const Workload& w, int tp) {
  std::vector<OpCost> ops = EmbeddingOps(m, w, tp);
  for (int64_t l = 0; l < m.num_layers; ++l) {
    std::vector<OpCost> layer = LayerOps(m, w, tp, l);
    ops.insert(ops.end(), layer.begin(), layer.end());
  }
  std::vector<OpCost> head = HeadOps(m, w, tp);
  ops.insert(ops.end(), head.begin(), head.end());
  return ops;
}

OpCost SumOps(const std::vector<OpCost>& ops) {
  OpCost sum;
  for (const OpCost& op : ops) {
    sum.flops += op.flops;
    sum.weight_bytes += op.weight_bytes;
    sum.weight_read_bytes += op.weight_read_bytes;
    sum.activation_bytes += op.activation_bytes;
    sum.kv_bytes += op.kv_bytes;
    sum.kv_resident_bytes += op.kv_resident_bytes;
    sum.allreduce_bytes += op.allreduce_bytes;
    sum.gather_bytes += op.gather_bytes;
    sum.matrix_passes += op.matrix_passes;
    sum.vector_passes += op.vector_passes;
  }
  return sum;
}

ChipCostParams LpuV1CostParams() {
  ChipCostParams p;
  p.matrix_efficiency = 0.8;
  // Fitted (the one free constant): Llama-2-70B, INT8, 4k context, batch 1 on 576 chips at
  // ~300 tokens/s per user = 3.33 ms per token. The latency plan is 40 stages of TP 8 (2 layers
  // each) plus the embedding's and the head's; per stage and chip ~214 MB of INT8 weights and
  // ~4 MB of KV cache stream into the matrix units, and the fixed terms take ~13 us (pipeline
  // fills ~5 us, the hops of four one-shot all-reduces and of the routed send to the next stage
  // ~4 us, their payloads ~4 us). `lockstep calibrate` on that one observation
  // (partition/params/lpu-v1.observations.json) gives the rate below, 3.9% of the 80 TB/s SRAM
  // figure; partitioner_test.cc: CalibratedAgainstGroqLlama70b checks +-10%.
  p.weight_stream_bytes_per_s = 3'134'002'612'132LL;
  p.vector_ops_per_s = 16LL * 320 * 900'000'000;  // 16 ALUs x 320 lanes x 900 MHz
  p.memory_efficiency = 0.8;
  p.op_overhead_ns = 0;
  p.matrix_fill_ns = 150;  // 132 cycles: see the header
  p.vector_fill_ns = 140;  // 124 cycles
  p.layer_sync_ns = 0;
  return p;
}

LinkCostParams LpuV1LinkCostParams() {
  LinkCostParams p;
  p.link_efficiency = 0.9;
  p.hop_latency_ns = -1;  // the link's: 600 ns for lpu-v1 links
  p.collective_step_overhead_ns = 140;
  return p;
}

std::string_view BoundName(Bound bound) {
  switch (bound) {
    case Bound::kOverhead:
      return "overhead";
    case Bound::kCompute:
      return "compute";
    case Bound::kWeightStream:
      return "weight_stream";
    case Bound::kMemory:
      return "memory";
  }
  return "?";
}

OpTime TimeOp(const OpCost& op, Dtype dtype, const topology::ChipSpec& chip,
              const ChipCostParams& params) {
  const int64_t memory_rate =
      EffectiveRate(chip.memory_bandwidth_bytes_per_s, params.memory_efficiency);
  OpTime t;
  switch (op.unit) {
    case Unit::kMatrix: {
      const int64_t peak = chip.peak_ops(dtype);
      if (peak <= 0) {
        std::string have;
        for (Dtype d : kAllDtypes) {
          if (chip.peak_ops(d) > 0) have += (have.empty() ? "" : ", ") + std::string(DtypeName(d));
        }
        throw InvalidInput("chip " + chip.name + " has no " + std::string(DtypeName(dtype)) +
                           " matrix compute (it supports: " + have + ")");
      }
      const int64_t stream =
          params.weight_stream_bytes_per_s > 0
              ? params.weight_stream_bytes_per_s
              : EffectiveRate(chip.memory_bandwidth_bytes_per_s, params.weight_stream_fraction);
      t.compute_ns = CeilNs(op.flops, EffectiveRate(peak, params.matrix_efficiency));
      // In attention the cached K and V play the weights' part: each is used once per query.
      t.weight_ns = CeilNs(op.weight_read_bytes + op.kv_bytes, stream);
      t.memory_ns = CeilNs(op.activation_bytes, memory_rate);
      break;
    }
    case Unit::kVector: {
      int64_t vector_rate = params.vector_ops_per_s;
      if (vector_rate <= 0) {
        int64_t best = chip.peak_ops(Dtype::kFp16);
        for (Dtype d : kAllDtypes) best = best > 0 ? best : chip.peak_ops(d);
        vector_rate = std::max<int64_t>(1, best / 50);  // 2%: see ChipCostParams::vector_ops_per_s
      }
      t.compute_ns = CeilNs(op.flops, vector_rate);
      t.memory_ns = CeilNs(op.activation_bytes + op.weight_read_bytes + op.kv_bytes, memory_rate);
      break;
    }
    case Unit::kMemory:
      t.memory_ns = CeilNs(op.activation_bytes + op.weight_read_bytes + op.kv_bytes, memory_rate);
      break;
  }
  const int64_t longest = std::max({t.compute_ns, t.weight_ns, t.memory_ns});
  t.fixed_ns = params.op_overhead_ns + op.matrix_passes * params.matrix_fill_ns +
               op.vector_passes * params.vector_fill_ns +
               (op.kind == OpKind::kAttentionNorm ? params.layer_sync_ns : 0);
  t.ns = t.fixed_ns + longest;
  if (longest == 0 || t.fixed_ns >= longest) {
    t.bound = Bound::kOverhead;
  } else if (longest == t.compute_ns) {
    t.bound = Bound::kCompute;
  } else if (longest == t.weight_ns) {
    t.bound = Bound::kWeightStream;
  } else {
    t.bound = Bound::kMemory;
  }
  return t;
}

LinkTimeParts TransferTimeParts(int64_t bytes, int hops, int64_t link_bandwidth_bytes_per_s,
                                int64_t link_latency_ns, const LinkCostParams& params) {
  LinkTimeParts t;
  if (bytes <= 0 || hops <= 0) return t;
  const int64_t hop = params.hop_latency_ns >= 0 ? params.hop_latency_ns : link_latency_ns;
  t.latency_ns = hops * hop;
  t.serialization_ns =
      hops * CeilNs(bytes, EffectiveRate(link_bandwidth_bytes_per_s, params.link_efficiency));
  return t;
}

int64_t TransferTimeNs(int64_t bytes, int hops, int64_t link_bandwidth_bytes_per_s,
                       int64_t link_latency_ns, const LinkCostParams& params) {
  return TransferTimeParts(bytes, hops, link_bandwidth_bytes_per_s, link_latency_ns, params)
      .total();
}

LinkTimeParts AllReduceTimeParts(int64_t bytes, int group, AllReduceAlgorithm algorithm,
                                 int64_t link_bandwidth_bytes_per_s, int64_t link_latency_ns,
                                 const LinkCostParams& params, int64_t chain_hops, int node_size) {
  LinkTimeParts t;
  if (group <= 1 || bytes <= 0) return t;
  // One-shot sends the whole partial in its one step; hierarchical a 1/node_size segment per
  // step; the others a 1/group chunk per step.
  const bool hierarchical = algorithm == AllReduceAlgorithm::kHierarchical && node_size > 0;
  const int64_t per_step = algorithm == AllReduceAlgorithm::kOneShot ? bytes
                           : hierarchical                            ? CeilDiv(bytes, node_size)
                                                                     : CeilDiv(bytes, group);
  const LinkTimeParts hop =
      TransferTimeParts(per_step, 1, link_bandwidth_bytes_per_s, link_latency_ns, params);
  const int64_t steps = AllReduceSteps(algorithm, group);
  const int64_t hops = chain_hops > 0 ? chain_hops : steps;
  t.latency_ns = hops * hop.latency_ns;
  t.serialization_ns = hops * hop.serialization_ns;
  t.fixed_ns = steps * params.collective_step_overhead_ns;
  return t;
}

int64_t AllReduceTimeNs(int64_t bytes, int group, AllReduceAlgorithm algorithm,
                        int64_t link_bandwidth_bytes_per_s, int64_t link_latency_ns,
                        const LinkCostParams& params, int64_t chain_hops, int node_size) {
  return AllReduceTimeParts(bytes, group, algorithm, link_bandwidth_bytes_per_s, link_latency_ns,
                            params, chain_hops, node_size)
      .total();
}

int64_t RingChainHops(const std::vector<int>& pair_hops) {
  const size_t g = pair_hops.size();
  if (g < 2) return 0;
  const size_t steps = 2 * (g - 1);
  int64_t best = 0;
  for (size_t start = 0; start < g; ++start) {
    int64_t sum = 0;
    for (size_t i = 0; i < steps; ++i) sum += pair_hops[(start + i) % g];
    best = std::max(best, sum);
  }
  return best;
}

int64_t AllReduceSteps(AllReduceAlgorithm algorithm, int group) {
  if (group <= 1) return 0;
  switch (algorithm) {
    case AllReduceAlgorithm::kOneShot:
      return 1;
    case AllReduceAlgorithm::kDirect:
      return 2;
    case AllReduceAlgorithm::kHierarchical:
      return 3;
    case AllReduceAlgorithm::kRing:
      break;
  }
  return 2 * (group - 1);
}

bool RowParallelProjection(const ModelSpec& spec, int tp, bool mlp) {
  const int64_t width = mlp ? spec.intermediate_size : spec.q_width();
  return tp <= 1 || (width % tp == 0 && (width / tp) % kReductionChunk == 0);
}

bool OneShotAllowed(const ModelSpec& spec, int tp, OpKind op) {
  switch (op) {
    case OpKind::kEmbedding:
      return true;
    case OpKind::kOutputProjection:
    case OpKind::kMlp:
      // Both of a layer's all-reduces or neither: a worker tells a layer's two collectives apart
      // by their order among the collectives of the same form (worker/src/chip_runner_impl.h
      // StepOf), so a one-shot o beside a reduce-scatter down (or the reverse) would be taken
      // for the other projection's.
      return RowParallelProjection(spec, tp, false) && RowParallelProjection(spec, tp, true);
    default:
      return false;
  }
}

AllReduceAlgorithm ChooseAllReduce(int64_t bytes, int group, bool direct, bool one_shot_allowed,
                                   int64_t link_bandwidth_bytes_per_s, int64_t link_latency_ns,
                                   const LinkCostParams& params, int node_size) {
  if (!direct) return node_size > 0 ? AllReduceAlgorithm::kHierarchical : AllReduceAlgorithm::kRing;
  if (!one_shot_allowed) return AllReduceAlgorithm::kDirect;
  const auto time = [&](AllReduceAlgorithm a) {
    return AllReduceTimeNs(bytes, group, a, link_bandwidth_bytes_per_s, link_latency_ns, params);
  };
  return time(AllReduceAlgorithm::kOneShot) <= time(AllReduceAlgorithm::kDirect)
             ? AllReduceAlgorithm::kOneShot
             : AllReduceAlgorithm::kDirect;
}

int HierarchicalNodeSize(const ModelSpec& spec, const topology::Topology& topo,
                         const std::vector<topology::ChipId>& chips) {
  const auto g = static_cast<int>(chips.size());
  if (g < 4 || !RowParallelProjection(spec, g, false) || !RowParallelProjection(spec, g, true)) {
    return 0;
  }
  // The run of ranks in rank 0's node sets the size; every run must match it.
  int n = 1;
  while (n < g && topo.chip(chips[static_cast<size_t>(n)]).node == topo.chip(chips[0]).node) ++n;
  if (n < 2 || n == g || g % n != 0) return 0;
  std::vector<int> nodes;
  for (int first = 0; first < g; first += n) {
    const int node = topo.chip(chips[static_cast<size_t>(first)]).node;
    if (std::find(nodes.begin(), nodes.end(), node) != nodes.end()) return 0;
    nodes.push_back(node);
    for (int i = first; i < first + n; ++i) {
      const topology::ChipId a = chips[static_cast<size_t>(i)];
      if (topo.chip(a).node != node) return 0;
      for (int j = i + 1; j < first + n; ++j) {
        bool linked = false;
        for (const topology::Adjacent& adj : topo.Neighbors(a)) {
          linked |= adj.peer == chips[static_cast<size_t>(j)];
        }
        if (!linked) return 0;
      }
    }
  }
  return n;
}

}  // namespace lockstep::partition
