#include "lockstep/model/stage_shard.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "llama_tensors.h"
#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"
#include "lockstep/model/reference.h"
#include "lockstep/partition/cost_model.h"
#include "ops.h"
#include "shard_slicer.h"

namespace lockstep::model {
namespace {

using ops::OrNull;
using partition::ModelSpec;

int64_t VocabBegin(int64_t vocab, int tp, int rank) { return vocab * rank / tp; }

}  // namespace

int64_t ReductionChunks(int64_t n) { return (n + kReductionChunk - 1) / kReductionChunk; }

std::vector<StageUnits> StagesFromPlan(const partition::Plan& plan) {
  std::vector<StageUnits> out;
  for (const partition::StagePlan& s : plan.stages) {
    out.push_back({s.has_embedding, s.first_layer, s.end_layer, s.has_head, s.tp});
  }
  return out;
}

std::vector<StageUnits> StagesFromLayout(const ModelLayout& layout) {
  std::vector<StageUnits> out;
  for (size_t i = 0; i < layout.stages.size(); ++i) {
    const StageLayout& s = layout.stages[i];
    out.push_back({i == 0, s.first_layer, s.end_layer, i + 1 == layout.stages.size(),
                   static_cast<int>(s.tp)});
  }
  return out;
}

void RequireDenseShards(const ModelSpec& spec) {
  if (spec.is_moe()) {
    throw InvalidInput("model '" + spec.name + "' is a mixture of experts (" +
                       std::to_string(spec.num_experts) +
                       " experts per layer): the distributed runtime's shards run dense models "
                       "only; run it in process (lockstep run without --transport, sharded with "
                       "--stages/--tp or --plan)");
  }
}

void ValidateStages(const ModelSpec& spec, const std::vector<StageUnits>& stages) {
  if (stages.empty()) throw InvalidInput("the pipeline has no stages");
  int64_t next = 0;
  int embeddings = 0, heads = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    const StageUnits& s = stages[i];
    const std::string where = "pipeline stage " + std::to_string(i);
    if (s.embedding && (i != 0 || embeddings++ > 0)) {
      throw InvalidInput(where + " holds the embedding; only stage 0 may");
    }
    if (i == 0 && !s.embedding) throw InvalidInput(where + " must hold the embedding");
    if (s.head && i + 1 != stages.size()) {
      throw InvalidInput(where + " holds the LM head; only the last stage may");
    }
    heads += s.head ? 1 : 0;
    if (s.first_layer != next || s.end_layer < s.first_layer) {
      throw InvalidInput(where + ": layers [" + std::to_string(s.first_layer) + ", " +
                         std::to_string(s.end_layer) + ") do not continue at layer " +
                         std::to_string(next));
    }
    if (s.end_layer == s.first_layer && !s.embedding && !s.head) {
      throw InvalidInput(where + " holds no units");
    }
    next = s.end_layer;
    if (s.tp < 1 || s.tp > spec.vocab_size) {
      throw InvalidInput(where + ": tensor-parallel degree " + std::to_string(s.tp) +
                         " must be in [1, vocab_size " + std::to_string(spec.vocab_size) + "]");
    }
    if (s.end_layer > s.first_layer) {
      if (const std::string p = partition::TensorParallelProblem(spec, s.tp); !p.empty()) {
        throw InvalidInput(where + ": " + p);
      }
    }
  }
  if (heads != 1) throw InvalidInput("the last pipeline stage must hold the LM head");
  if (next != spec.num_layers) {
    throw InvalidInput("the pipeline covers " + std::to_string(next) + " layers, the model has " +
                       std::to_string(spec.num_layers));
  }
}

static_assert(kReductionChunk == partition::kReductionChunk,
              "the partitioner's split rule must use the kernels' reduction chunk");

ShardLayer LayerGeometry(const ModelSpec& s, int tp, int rank) {
  // As ShardedModel: query heads split evenly; a rank's KV heads are those its query heads use
  // (one, replicated, when tp exceeds num_key_value_heads).
  ShardLayer ls;
  const int64_t group = s.num_heads / s.num_kv_heads;
  ls.q_heads = s.num_heads / tp;
  ls.q_head_begin = rank * ls.q_heads;
  ls.kv_heads = std::max<int64_t>(1, s.num_kv_heads / tp);
  ls.kv_head_begin = ls.q_head_begin / group;
  ls.f_count = s.intermediate_size / tp;
  ls.f_begin = rank * ls.f_count;
  ls.out_begin = s.hidden_size * rank / tp;
  ls.out_count = s.hidden_size * (rank + 1) / tp - ls.out_begin;
  return ls;
}

int64_t ShardWeights::bytes() const {
  int64_t n = embed.bytes() + head.bytes() + static_cast<int64_t>(final_norm.size() * 4);
  for (const ShardLayer& l : layers) {
    for (const Weight* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down, &l.router}) {
      n += w->bytes();
    }
    for (const ExpertWeights& e : l.experts) n += e.gate.bytes() + e.up.bytes() + e.down.bytes();
    for (const std::vector<float>* v :
         {&l.input_norm, &l.post_norm, &l.q_bias, &l.k_bias, &l.v_bias, &l.o_bias, &l.gate_bias,
          &l.up_bias, &l.down_bias}) {
      n += static_cast<int64_t>(v->size() * sizeof(float));
    }
  }
  return n;
}

ShardWeights ExtractShard(const LlamaWeights& weights, const ModelSpec& spec,
                          const std::vector<StageUnits>& stages, int stage, int rank) {
  RequireDenseShards(spec);
  ValidateStages(spec, stages);
  CheckLlamaWeights(weights, spec);
  return SliceShard(MemorySource(weights, spec), spec, stages, stage, rank);
}

Partial Partial::TreeNodeSums(int64_t total_chunks) const {
  if (kind != PartialKind::kRowParallel || reduced || tree_nodes) {
    throw Error(ErrorCode::kInternal,
                "partial: only row-parallel chunk partials sum to tree nodes");
  }
  const std::vector<TreeNode> nodes = TreeNodes(total_chunks, first_chunk, first_chunk + chunks);
  const auto k = static_cast<int64_t>(nodes.size());
  Partial p;
  p.kind = kind;
  p.rows = rows;
  p.out_begin = out_begin;
  p.out_count = out_count;
  p.first_chunk = first_chunk;
  p.chunks = chunks;
  p.tree_nodes = true;
  p.values.resize(static_cast<size_t>(rows * k * out_count));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < k; ++j) {
      const TreeNode& n = nodes[static_cast<size_t>(j)];
      TreeSumRowsStrided(values.data() + r * out_count * chunks + (n.begin - first_chunk),
                         out_count, n.end - n.begin, chunks,
                         p.values.data() + (r * k + j) * out_count);
    }
  }
  return p;
}

Partial Partial::Slice(int64_t begin, int64_t count) const {
  if (tree_nodes) throw Error(ErrorCode::kInternal, "partial: tree-node sums are not sliced");
  if (begin < out_begin || count < 0 || begin + count > out_begin + out_count) {
    throw Error(ErrorCode::kInternal, "partial: outputs [" + std::to_string(begin) + ", " +
                                          std::to_string(begin + count) + ") are not inside [" +
                                          std::to_string(out_begin) + ", " +
                                          std::to_string(out_begin + out_count) + ")");
  }
  Partial p = *this;
  p.out_begin = begin;
  p.out_count = count;
  p.values.resize(static_cast<size_t>(rows * count * chunks));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(values.begin() + ((r * out_count) + (begin - out_begin)) * chunks, count * chunks,
                p.values.begin() + r * count * chunks);
  }
  return p;
}

void CombineRowParallel(std::span<const Partial> by_rank, int64_t total_chunks, int64_t begin,
                        int64_t end, const std::vector<float>& bias, float* out) {
  if (by_rank.empty()) throw Error(ErrorCode::kInternal, "row-parallel combine: no partials");
  const int64_t rows = by_rank.front().rows;
  const int64_t n = end - begin;
  const bool tree_nodes = by_rank.front().tree_nodes;
  for (const Partial& p : by_rank) {
    if (p.rows != rows) throw Error(ErrorCode::kInternal, "row-parallel combine: rows differ");
    if (p.tree_nodes != tree_nodes) {
      throw Error(ErrorCode::kInternal, "row-parallel combine: chunk partials and tree-node sums");
    }
    const int64_t per_output =
        tree_nodes ? static_cast<int64_t>(
                         TreeNodes(total_chunks, p.first_chunk, p.first_chunk + p.chunks).size())
                   : p.chunks;
    if (static_cast<int64_t>(p.values.size()) != rows * p.out_count * per_output) {
      throw Error(ErrorCode::kInternal,
                  "row-parallel combine: a partial holds " + std::to_string(p.values.size()) +
                      " values, not rows " + std::to_string(rows) + " x outputs " +
                      std::to_string(p.out_count) + " x chunks " + std::to_string(p.chunks));
    }
    if (begin < p.out_begin || n < 0 || end > p.out_begin + p.out_count) {
      throw Error(ErrorCode::kInternal, "row-parallel combine: outputs [" + std::to_string(begin) +
                                            ", " + std::to_string(end) + ") are not inside [" +
                                            std::to_string(p.out_begin) + ", " +
                                            std::to_string(p.out_begin + p.out_count) + ")");
    }
  }
  auto add_bias = [&] {
    if (bias.empty()) return;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < n; ++o) out[r * n + o] += bias[static_cast<size_t>(begin + o)];
    }
  };
  if (by_rank.size() == 1 && by_rank[0].reduced) {
    const Partial& p = by_rank[0];
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(p.values.begin() + r * p.out_count + (begin - p.out_begin), n, out + r * n);
    }
    add_bias();
    return;
  }
  // The ranks' chunk ranges in contraction order; they must tile [0, total_chunks). Then every
  // output's canonical tree over all chunks is TreeSum of its chunks laid end to end (a node
  // inside one rank's range is that rank's subtree, the nodes above it combine the ranks'
  // subtrees), which TreeSumRows computes eight outputs at a time.
  std::vector<const Partial*> order;
  for (const Partial& p : by_rank) {
    if (p.reduced)
      throw Error(ErrorCode::kInternal, "row-parallel combine: a finished product among partials");
    order.push_back(&p);
  }
  std::stable_sort(order.begin(), order.end(), [](const Partial* a, const Partial* b) {
    return a->first_chunk < b->first_chunk;
  });
  int64_t next = 0;
  for (const Partial* p : order) {
    if (p->first_chunk != next || p->chunks < 1) break;
    next += p->chunks;
  }
  if (next != total_chunks) {
    throw Error(ErrorCode::kInternal, "row-parallel combine: the ranks' chunks do not tile the " +
                                          std::to_string(total_chunks) +
                                          " of the contraction (no rank holds exactly chunk " +
                                          std::to_string(next) + " onwards)");
  }
  if (tree_nodes) {
    // Every rank's nodes in chunk order (the same for every row); per node and row, the sums of
    // n consecutive outputs.
    std::vector<TreeNode> nodes;
    struct Owner {
      const Partial* partial;
      int64_t index, count;  // the node's index among its partial's `count` nodes
    };
    std::vector<Owner> owner;
    for (const Partial* p : order) {
      const std::vector<TreeNode> mine =
          TreeNodes(total_chunks, p->first_chunk, p->first_chunk + p->chunks);
      for (size_t j = 0; j < mine.size(); ++j) {
        nodes.push_back(mine[j]);
        owner.push_back({p, static_cast<int64_t>(j), static_cast<int64_t>(mine.size())});
      }
    }
    std::vector<const float*> ptrs(nodes.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (size_t i = 0; i < nodes.size(); ++i) {
        const Owner& o = owner[i];
        ptrs[i] = o.partial->values.data() + (r * o.count + o.index) * o.partial->out_count +
                  (begin - o.partial->out_begin);
      }
      try {
        TreeCombineRows(nodes, ptrs, total_chunks, n, out + r * n);
      } catch (const std::invalid_argument& e) {
        throw Error(ErrorCode::kInternal, std::string("row-parallel combine: ") + e.what());
      }
    }
    add_bias();
    return;
  }
  std::vector<float> chunks(static_cast<size_t>(n * total_chunks));
  for (int64_t r = 0; r < rows; ++r) {
    for (const Partial* p : order) {
      const float* src = p->values.data() + (r * p->out_count + (begin - p->out_begin)) * p->chunks;
      float* dst = chunks.data() + p->first_chunk;
      for (int64_t o = 0; o < n; ++o) {
        std::copy_n(src + o * p->chunks, p->chunks, dst + o * total_chunks);
      }
    }
    TreeSumRows(chunks.data(), n, total_chunks, out + r * n);
  }
  add_bias();
}

void CombineEmbedding(std::span<const Partial> by_rank, std::span<const int32_t> tokens,
                      int64_t vocab, int64_t begin, int64_t end, float* out) {
  const int tp = static_cast<int>(by_rank.size());
  const int64_t n = end - begin;
  for (size_t i = 0; i < tokens.size(); ++i) {
    int owner = 0;
    while (owner + 1 < tp && tokens[i] >= VocabBegin(vocab, tp, owner + 1)) ++owner;
    const Partial& p = by_rank[static_cast<size_t>(owner)];
    if (begin < p.out_begin || end > p.out_begin + p.out_count ||
        static_cast<int64_t>(i) >= p.rows) {
      throw Error(ErrorCode::kInternal, "embedding combine: rank " + std::to_string(owner) +
                                            " sent outputs that do not cover the segment");
    }
    std::copy_n(p.values.begin() + static_cast<int64_t>(i) * p.out_count + (begin - p.out_begin), n,
                out + static_cast<int64_t>(i) * n);
  }
}

StageShard::StageShard(ModelSpec spec, ShardWeights weights)
    : spec_(std::move(spec)), weights_(std::move(weights)) {
  RequireDenseShards(spec_);
  if (spec_.head_dim % 2 != 0) throw InvalidInput("rotate-half RoPE needs an even head_dim");
  if (static_cast<int64_t>(weights_.layers.size()) !=
      weights_.units.end_layer - weights_.units.first_layer) {
    throw InvalidInput("shard of stage " + std::to_string(weights_.stage) + " rank " +
                       std::to_string(weights_.rank) + " holds " +
                       std::to_string(weights_.layers.size()) + " layers, its stage has " +
                       std::to_string(weights_.units.end_layer - weights_.units.first_layer));
  }
  inv_freq_ = RopeInverseFrequencies(spec_);
}

void StageShard::ResetSlot(int32_t slot) {
  if (slot < 0) throw InvalidInput("slot " + std::to_string(slot) + " is negative");
  if (static_cast<size_t>(slot) >= caches_.size()) caches_.resize(static_cast<size_t>(slot) + 1);
  caches_[static_cast<size_t>(slot)] = Cache{};
}

Partial StageShard::Embed(std::span<const int32_t> tokens) const {
  const int64_t h = spec_.hidden_size;
  Partial p;
  p.kind = PartialKind::kEmbedding;
  p.rows = static_cast<int64_t>(tokens.size());
  p.out_count = h;
  p.chunks = 1;
  p.first_chunk = weights_.rank;
  p.values.assign(static_cast<size_t>(p.rows * h), 0.0f);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= spec_.vocab_size) {
      throw InvalidInput("token " + std::to_string(t) + " is outside the vocabulary [0, " +
                         std::to_string(spec_.vocab_size) + ")");
    }
    if (t >= weights_.vocab_begin && t < weights_.vocab_begin + weights_.vocab_count) {
      weights_.embed.RowFp32(t - weights_.vocab_begin,
                             p.values.data() + static_cast<int64_t>(i) * h);
    }
  }
  return p;
}

Partial StageShard::AttentionPartials(int64_t layer, const float* x,
                                      std::span<const RowGroup> groups) {
  const ModelSpec& s = spec_;
  const ShardLayer& ls =
      weights_.layers.at(static_cast<size_t>(layer - weights_.units.first_layer));
  const int64_t h = s.hidden_size, hd = s.head_dim, half = hd / 2;
  const int64_t group = s.num_heads / s.num_kv_heads;
  const int64_t qw = ls.q_heads * hd, kvw = ls.kv_heads * hd;
  const auto eps = static_cast<float>(s.rms_norm_eps);
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const size_t li = static_cast<size_t>(layer - weights_.units.first_layer);
  const size_t layers = weights_.layers.size();

  int64_t rows = 0, max_context = 0;
  for (const RowGroup& g : groups) {
    if (g.slot < 0) throw InvalidInput("slot " + std::to_string(g.slot) + " is negative");
    if (static_cast<size_t>(g.slot) >= caches_.size()) {
      caches_.resize(static_cast<size_t>(g.slot) + 1);
    }
    Cache& c = caches_[static_cast<size_t>(g.slot)];
    if (c.keys.empty()) {
      c.keys.resize(layers);
      c.values.resize(layers);
    }
    // The first layer of the stage appends; the others must see the same positions.
    const int64_t filled = static_cast<int64_t>(c.keys[li].size()) / std::max<int64_t>(kvw, 1);
    if (g.position != filled) {
      throw InvalidInput("slot " + std::to_string(g.slot) + " layer " + std::to_string(layer) +
                         ": new tokens at position " + std::to_string(g.position) +
                         " but its KV cache holds " + std::to_string(filled) + " positions");
    }
    rows += g.count;
    max_context = std::max(max_context, g.position + g.count);
  }

  std::vector<float> xn(static_cast<size_t>(rows * h));
  for (int64_t r = 0; r < rows; ++r) {
    ops::RmsNorm(x + r * h, ls.input_norm.data(), h, eps, &xn[static_cast<size_t>(r * h)]);
  }
  std::vector<float> q(static_cast<size_t>(rows * qw)), k(static_cast<size_t>(rows * kvw)),
      v(k.size()), attn(q.size());
  MatMul(xn.data(), rows, ls.q, OrNull(ls.q_bias), q.data());
  MatMul(xn.data(), rows, ls.k, OrNull(ls.k_bias), k.data());
  MatMul(xn.data(), rows, ls.v, OrNull(ls.v_bias), v.data());
  std::vector<float> cos(static_cast<size_t>(half)), sin(cos.size());
  std::vector<float> scores(static_cast<size_t>(std::max<int64_t>(max_context, 1)));
  std::vector<float> scratch(static_cast<size_t>(ScratchForWeightedSum(max_context, hd)));
  int64_t r = 0;
  for (const RowGroup& g : groups) {
    Cache& c = caches_[static_cast<size_t>(g.slot)];
    std::vector<float>& keys = c.keys[li];
    std::vector<float>& values = c.values[li];
    keys.resize(static_cast<size_t>((g.position + g.count) * kvw));
    values.resize(keys.size());
    for (int64_t i = 0; i < g.count; ++i) {
      const int64_t pos = g.position + i, row = r + i;
      ops::RopeTable(pos, inv_freq_, cos.data(), sin.data());
      for (int64_t j = 0; j < ls.q_heads; ++j) {
        ops::ApplyRope(&q[static_cast<size_t>(row * qw + j * hd)], cos.data(), sin.data(), half);
      }
      for (int64_t j = 0; j < ls.kv_heads; ++j) {
        ops::ApplyRope(&k[static_cast<size_t>(row * kvw + j * hd)], cos.data(), sin.data(), half);
      }
      std::copy_n(&k[static_cast<size_t>(row * kvw)], kvw, &keys[static_cast<size_t>(pos * kvw)]);
      std::copy_n(&v[static_cast<size_t>(row * kvw)], kvw, &values[static_cast<size_t>(pos * kvw)]);
    }
    for (int64_t i = 0; i < g.count; ++i) {
      const int64_t pos = g.position + i, row = r + i;
      for (int64_t j = 0; j < ls.q_heads; ++j) {
        const int64_t kv_off = (j / group) * hd;
        ops::AttendHead(&q[static_cast<size_t>(row * qw + j * hd)], keys.data() + kv_off,
                        values.data() + kv_off, kvw, pos, s.sliding_window, hd, scale,
                        scores.data(), scratch, &attn[static_cast<size_t>(row * qw + j * hd)]);
      }
    }
    r += g.count;
  }
  Partial p;
  p.kind = PartialKind::kRowParallel;
  p.rows = rows;
  p.out_count = h;
  if (weights_.units.tp == 1) {
    p.reduced = true;
    p.values.resize(static_cast<size_t>(rows * h));
    MatMul(attn.data(), rows, ls.o, nullptr, p.values.data());
    return p;
  }
  if (!RowParallelProjection(s, weights_.units.tp, false)) {
    p.kind = PartialKind::kColumnInput;
    p.out_begin = ls.q_head_begin * hd;
    p.out_count = qw;
    p.values = std::move(attn);
    return p;
  }
  p.chunks = ReductionChunks(qw);
  p.first_chunk = ls.q_head_begin * hd / kReductionChunk;
  p.values.resize(static_cast<size_t>(rows * h * p.chunks));
  MatMulChunkPartials(attn.data(), rows, ls.o, p.values.data());
  return p;
}

Partial StageShard::MlpPartials(int64_t layer, const float* x, int64_t rows) const {
  const ModelSpec& s = spec_;
  const ShardLayer& ls =
      weights_.layers.at(static_cast<size_t>(layer - weights_.units.first_layer));
  const int64_t h = s.hidden_size;
  const auto eps = static_cast<float>(s.rms_norm_eps);
  std::vector<float> xn(static_cast<size_t>(rows * h));
  for (int64_t r = 0; r < rows; ++r) {
    ops::RmsNorm(x + r * h, ls.post_norm.data(), h, eps, &xn[static_cast<size_t>(r * h)]);
  }
  std::vector<float> gate(static_cast<size_t>(rows * ls.f_count)), up(gate.size());
  MatMul(xn.data(), rows, ls.gate, OrNull(ls.gate_bias), gate.data());
  MatMul(xn.data(), rows, ls.up, OrNull(ls.up_bias), up.data());
  for (size_t i = 0; i < gate.size(); ++i) gate[i] = ops::Silu(gate[i]) * up[i];
  Partial p;
  p.kind = PartialKind::kRowParallel;
  p.rows = rows;
  p.out_count = h;
  if (weights_.units.tp == 1) {
    p.reduced = true;
    p.values.resize(static_cast<size_t>(rows * h));
    MatMul(gate.data(), rows, ls.down, nullptr, p.values.data());
    return p;
  }
  if (!RowParallelProjection(s, weights_.units.tp, true)) {
    p.kind = PartialKind::kColumnInput;
    p.out_begin = ls.f_begin;
    p.out_count = ls.f_count;
    p.values = std::move(gate);
    return p;
  }
  p.chunks = ReductionChunks(ls.f_count);
  p.first_chunk = ls.f_begin / kReductionChunk;
  p.values.resize(static_cast<size_t>(rows * h * p.chunks));
  MatMulChunkPartials(gate.data(), rows, ls.down, p.values.data());
  return p;
}

std::vector<float> StageShard::HeadLogits(const float* x, int64_t n) const {
  const int64_t h = spec_.hidden_size;
  const auto eps = static_cast<float>(spec_.rms_norm_eps);
  std::vector<float> last(static_cast<size_t>(h));
  std::vector<float> out(static_cast<size_t>(n * weights_.vocab_count));
  for (int64_t i = 0; i < n; ++i) {
    ops::RmsNorm(x + i * h, weights_.final_norm.data(), h, eps, last.data());
    MatMul(last.data(), 1, weights_.head, nullptr,
           &out[static_cast<size_t>(i * weights_.vocab_count)]);
  }
  return out;
}

std::vector<float> StageShard::ColumnOutputs(int64_t layer, bool mlp,
                                             std::span<const Partial> by_rank) const {
  const ModelSpec& s = spec_;
  const ShardLayer& ls =
      weights_.layers.at(static_cast<size_t>(layer - weights_.units.first_layer));
  const int64_t width = mlp ? s.intermediate_size : s.q_width();
  if (by_rank.empty()) throw Error(ErrorCode::kInternal, "column-parallel product: no inputs");
  const int64_t rows = by_rank.front().rows;
  // The gathered input [rows, width]: every element from exactly one rank's slice.
  std::vector<float> x(static_cast<size_t>(rows * width));
  int64_t covered = 0;
  for (const Partial& p : by_rank) {
    if (p.kind != PartialKind::kColumnInput || p.rows != rows || p.out_begin != covered ||
        p.out_count <= 0 || p.out_begin + p.out_count > width ||
        static_cast<int64_t>(p.values.size()) != rows * p.out_count) {
      throw Error(ErrorCode::kInternal, "column-parallel product of layer " +
                                            std::to_string(layer) +
                                            ": the ranks' input slices do not tile its width " +
                                            std::to_string(width) + " in order");
    }
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(p.values.begin() + r * p.out_count, p.out_count,
                  x.begin() + r * width + p.out_begin);
    }
    covered += p.out_count;
  }
  if (covered != width) {
    throw Error(ErrorCode::kInternal, "column-parallel product of layer " + std::to_string(layer) +
                                          ": inputs cover " + std::to_string(covered) + " of " +
                                          std::to_string(width));
  }
  std::vector<float> out(static_cast<size_t>(rows * ls.out_count));
  MatMul(x.data(), rows, mlp ? ls.down : ls.o, nullptr, out.data());
  const std::vector<float>& bias = mlp ? ls.down_bias : ls.o_bias;
  if (!bias.empty()) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < ls.out_count; ++o) {
        out[static_cast<size_t>(r * ls.out_count + o)] +=
            bias[static_cast<size_t>(ls.out_begin + o)];
      }
    }
  }
  return out;
}

const std::vector<float>& StageShard::RowParallelBias(int64_t layer, bool mlp) const {
  const ShardLayer& ls =
      weights_.layers.at(static_cast<size_t>(layer - weights_.units.first_layer));
  return mlp ? ls.down_bias : ls.o_bias;
}

}  // namespace lockstep::model
