#include "lockstep/model/sharded.h"

#include <algorithm>

#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"
#include "lockstep/model/reference.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/partition/cost_model.h"
#include "ops.h"
#include "shard_slicer.h"

namespace lockstep::model {
namespace {

using ops::Columns;
using ops::OrNull;
using ops::Rows;
using partition::ModelSpec;

int64_t Chunks(int64_t n) { return (n + kReductionChunk - 1) / kReductionChunk; }

// One shard's slice of one row-parallel reduction: chunk partials of its contraction range
// for every (row, output), and where its chunks sit in the whole contraction.
struct PartialSlice {
  int64_t first_chunk = 0;
  int64_t chunks = 0;
  std::vector<float> partials;  // [rows][outputs][chunks]
};

// The canonical tree over chunks [begin, end): a node inside one shard's range is that shard's
// own subtree (TreeSum of its partials); above that the collective combines, in the same tree.
float CombineNode(const std::vector<PartialSlice>& slices, size_t offset, int64_t begin,
                  int64_t end) {
  for (const PartialSlice& s : slices) {
    if (s.first_chunk <= begin && end <= s.first_chunk + s.chunks) {
      const float* p =
          s.partials.data() + offset * static_cast<size_t>(s.chunks) + (begin - s.first_chunk);
      return TreeSum({p, static_cast<size_t>(end - begin)});
    }
  }
  int64_t m = 1;
  while (m * 2 < end - begin) m *= 2;
  return CombineNode(slices, offset, begin, begin + m) +
         CombineNode(slices, offset, begin + m, end);
}

// The collective of a row-parallel product: y[r, o] = tree over all shards' partials + bias.
void ReduceRowParallel(const std::vector<PartialSlice>& slices, int64_t rows, int64_t outputs,
                       int64_t total_chunks, const std::vector<float>& bias, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < outputs; ++o) {
      const auto offset = static_cast<size_t>(r * outputs + o);
      y[offset] = CombineNode(slices, offset, 0, total_chunks);
      if (!bias.empty()) y[offset] += bias[static_cast<size_t>(o)];
    }
  }
}

// One shard computes its partials of x[rows, width] . w[outputs, width] (its contraction slice
// starting at element `first`).
PartialSlice ShardPartials(const float* x, int64_t rows, const Weight& w, int64_t first) {
  PartialSlice s;
  s.first_chunk = first / kReductionChunk;
  s.chunks = Chunks(w.cols);
  s.partials.resize(static_cast<size_t>(rows * w.rows * s.chunks));
  MatMulChunkPartials(x, rows, w, s.partials.data());
  return s;
}

// A column-parallel product over all-gathered inputs x[rows, width]: each shard computes its
// hidden outputs with whole canonical dot products (the same bits as the unsplit product),
// and the outputs are gathered into y[rows, hidden], + bias.
template <typename Pick>
void ColumnParallel(const std::vector<ShardLayer>& shards, Pick weight, const float* x,
                    int64_t rows, int64_t hidden, const std::vector<float>& bias, float* y) {
  for (const ShardLayer& ls : shards) {
    std::vector<float> part(static_cast<size_t>(rows * ls.out_count));
    MatMul(x, rows, weight(ls), nullptr, part.data());
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(&part[r * ls.out_count], ls.out_count, y + r * hidden + ls.out_begin);
    }
  }
  if (bias.empty()) return;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < hidden; ++o) y[r * hidden + o] += bias[static_cast<size_t>(o)];
  }
}

}  // namespace

// The shards are StageShard's (ExtractShard of the layout as stages: an embedding-only stage of
// the embedding's degree, the layout's stages, a head-only stage of the head's degree), so the
// in-process sharded model holds exactly what the workers of the same layout hold.
struct ShardedModel::Shards {
  std::vector<std::vector<ShardLayer>> layers;  // [layer][shard]
  std::vector<ShardWeights> embed, head;        // by rank: their vocabulary rows
  std::vector<float> final_norm;
};

ModelLayout ModelLayout::Uniform(int64_t num_layers, int64_t stages, int64_t tp) {
  ModelLayout l;
  int64_t first = 0;
  for (int64_t s = 0; s < stages; ++s) {
    const int64_t n = num_layers / stages + (s < num_layers % stages ? 1 : 0);
    l.stages.push_back({first, first + n, tp});
    first += n;
  }
  return l;
}

std::string ModelLayout::ToString() const {
  std::string out = embed_tp > 0 ? "embed x" + std::to_string(embed_tp) : "";
  for (const StageLayout& s : stages) {
    out += (out.empty() ? "" : " ") + std::string("[") + std::to_string(s.first_layer) + "," +
           std::to_string(s.end_layer) + ")x" + std::to_string(s.tp);
  }
  if (head_tp > 0)
    out += (out.empty() ? "" : " ") + std::string("head x") + std::to_string(head_tp);
  return out;
}

void ValidateLayout(const ModelSpec& spec, const ModelLayout& layout) {
  if (layout.stages.empty()) throw InvalidInput("layout has no pipeline stages");
  int64_t next = 0;
  for (size_t i = 0; i < layout.stages.size(); ++i) {
    const StageLayout& s = layout.stages[i];
    const std::string where = "layout stage " + std::to_string(i) + " (" + layout.ToString() + ")";
    if (s.first_layer != next || s.end_layer <= s.first_layer) {
      throw InvalidInput(where +
                         ": stages must cover layers in order without gaps; expected a "
                         "non-empty range starting at layer " +
                         std::to_string(next));
    }
    next = s.end_layer;
    if (s.tp > INT32_MAX) throw InvalidInput(where + ": tensor-parallel degree is too large");
    if (const std::string p = partition::TensorParallelProblem(spec, static_cast<int>(s.tp));
        !p.empty()) {
      throw InvalidInput(where + ": " + p);
    }
    if (s.tp > spec.vocab_size) throw InvalidInput(where + ": degree exceeds the vocabulary");
  }
  for (const auto& [name, tp] :
       {std::pair{"embedding", layout.embed_tp}, {"LM head", layout.head_tp}}) {
    if (tp < 0 || tp > spec.vocab_size) {
      throw InvalidInput("layout " + layout.ToString() + ": " + name + " degree " +
                         std::to_string(tp) + " must be in [1, vocab_size " +
                         std::to_string(spec.vocab_size) + "] (0 = its neighbour stage's)");
    }
  }
  if (next != spec.num_layers) {
    throw InvalidInput("layout " + layout.ToString() + " covers " + std::to_string(next) +
                       " layers, the model has " + std::to_string(spec.num_layers));
  }
}

ShardedModel::ShardedModel(ModelSpec spec, const LlamaWeights& weights, ModelLayout layout)
    : spec_(std::move(spec)), layout_(std::move(layout)), shards_(std::make_unique<Shards>()) {
  ValidateLayout(spec_, layout_);
  CheckLlamaWeights(weights, spec_);
  if (spec_.head_dim % 2 != 0) throw InvalidInput("rotate-half RoPE needs an even head_dim");
  inv_freq_ = RopeInverseFrequencies(spec_);
  std::vector<StageUnits> units = {{true, 0, 0, false, static_cast<int>(layout_.EmbedTp())}};
  for (const StageLayout& stage : layout_.stages) {
    units.push_back({false, stage.first_layer, stage.end_layer, false, static_cast<int>(stage.tp)});
  }
  units.push_back(
      {false, spec_.num_layers, spec_.num_layers, true, static_cast<int>(layout_.HeadTp())});
  shards_->layers.resize(static_cast<size_t>(spec_.num_layers));
  ValidateStages(spec_, units);
  const MemorySource source(weights, spec_);
  for (size_t s = 0; s < units.size(); ++s) {
    for (int t = 0; t < units[s].tp; ++t) {
      ShardWeights w = SliceShard(source, spec_, units, static_cast<int>(s), t);
      for (size_t i = 0; i < w.layers.size(); ++i) {
        shards_->layers[static_cast<size_t>(units[s].first_layer) + i].push_back(
            std::move(w.layers[i]));
      }
      if (units[s].head) shards_->final_norm = w.final_norm;
      if (units[s].embedding) shards_->embed.push_back(std::move(w));
      if (units[s].head) shards_->head.push_back(std::move(w));
    }
  }
}

ShardedModel::~ShardedModel() = default;
ShardedModel::ShardedModel(ShardedModel&&) noexcept = default;

ShardedKvCache ShardedModel::NewCache(int64_t capacity) const {
  if (capacity <= 0) {
    throw InvalidInput("KV cache capacity must be > 0 positions, got " + std::to_string(capacity));
  }
  ShardedKvCache c;
  c.capacity_ = capacity;
  for (const std::vector<ShardLayer>& layer : shards_->layers) {
    std::vector<std::vector<float>> per_shard;
    for (const ShardLayer& ls : layer) {
      per_shard.emplace_back(static_cast<size_t>(capacity * ls.kv_heads * spec_.head_dim));
    }
    c.keys_.push_back(per_shard);
    c.values_.push_back(std::move(per_shard));
  }
  return c;
}

std::vector<std::vector<float>> ShardedModel::Forward(std::span<ShardedStep> batch) const {
  const ModelSpec& s = spec_;
  const int64_t h = s.hidden_size, hd = s.head_dim, half = hd / 2;
  const int64_t group = s.num_heads / s.num_kv_heads;
  const auto eps = static_cast<float>(s.rms_norm_eps);
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));

  const int64_t rows = ops::CheckBatch(batch, s.vocab_size, [&](const ShardedKvCache& c) {
    return c.keys_.size() == shards_->layers.size();
  });

  // Embedding, vocab-parallel: each token's row comes from the shard that holds it.
  std::vector<int64_t> row_pos, row_seq;
  std::vector<float> x(static_cast<size_t>(rows * h));
  for (size_t b = 0; b < batch.size(); ++b) {
    for (size_t i = 0; i < batch[b].tokens.size(); ++i) {
      const int64_t r = static_cast<int64_t>(row_pos.size());
      const int32_t token = batch[b].tokens[i];
      row_pos.push_back(batch[b].cache->length_ + static_cast<int64_t>(i));
      row_seq.push_back(static_cast<int64_t>(b));
      for (const ShardWeights& v : shards_->embed) {
        if (token >= v.vocab_begin && token < v.vocab_begin + v.vocab_count) {
          v.embed.RowFp32(token - v.vocab_begin, &x[static_cast<size_t>(r * h)]);
        }
      }
    }
  }
  std::vector<float> cos(static_cast<size_t>(rows * half)), sin(cos.size());
  for (int64_t r = 0; r < rows; ++r) {
    ops::RopeTable(row_pos[r], inv_freq_, &cos[r * half], &sin[r * half]);
  }
  int64_t max_context = 0;
  for (int64_t p : row_pos) max_context = std::max(max_context, p + 1);
  std::vector<float> scores(static_cast<size_t>(max_context));
  std::vector<float> scratch(static_cast<size_t>(ScratchForWeightedSum(max_context, hd)));
  std::vector<float> xn(x.size()), proj(x.size());

  for (size_t layer = 0; layer < shards_->layers.size(); ++layer) {
    const std::vector<ShardLayer>& shards = shards_->layers[layer];
    // Norms and the o/down biases are replicated: every shard holds them.
    const ShardLayer& rep = shards.front();
    const int tp = static_cast<int>(shards.size());
    const bool o_row_parallel = RowParallelProjection(s, tp, false);
    const bool down_row_parallel = RowParallelProjection(s, tp, true);
    for (int64_t r = 0; r < rows; ++r) {
      ops::RmsNorm(&x[r * h], rep.input_norm.data(), h, eps, &xn[r * h]);
    }
    std::vector<PartialSlice> o_slices;
    std::vector<float> gathered(o_row_parallel ? 0 : static_cast<size_t>(rows * s.q_width()));
    for (size_t t = 0; t < shards.size(); ++t) {
      const ShardLayer& ls = shards[t];
      const int64_t qw = ls.q_heads * hd, kvw = ls.kv_heads * hd;
      std::vector<float> q(static_cast<size_t>(rows * qw)), k(static_cast<size_t>(rows * kvw)),
          v(k.size()), attn(q.size());
      MatMul(xn.data(), rows, ls.q, OrNull(ls.q_bias), q.data());
      MatMul(xn.data(), rows, ls.k, OrNull(ls.k_bias), k.data());
      MatMul(xn.data(), rows, ls.v, OrNull(ls.v_bias), v.data());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < ls.q_heads; ++j) {
          ops::ApplyRope(&q[r * qw + j * hd], &cos[r * half], &sin[r * half], half);
        }
        for (int64_t j = 0; j < ls.kv_heads; ++j) {
          ops::ApplyRope(&k[r * kvw + j * hd], &cos[r * half], &sin[r * half], half);
        }
        ShardedKvCache& cache = *batch[static_cast<size_t>(row_seq[r])].cache;
        std::copy_n(&k[r * kvw], kvw, &cache.keys_[layer][t][row_pos[r] * kvw]);
        std::copy_n(&v[r * kvw], kvw, &cache.values_[layer][t][row_pos[r] * kvw]);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const ShardedKvCache& cache = *batch[static_cast<size_t>(row_seq[r])].cache;
        for (int64_t j = 0; j < ls.q_heads; ++j) {
          const int64_t kv_off = (j / group) * hd;
          ops::AttendHead(&q[r * qw + j * hd], cache.keys_[layer][t].data() + kv_off,
                          cache.values_[layer][t].data() + kv_off, kvw, row_pos[r],
                          s.sliding_window, hd, scale, scores.data(), scratch,
                          &attn[r * qw + j * hd]);
        }
      }
      if (o_row_parallel) {
        o_slices.push_back(ShardPartials(attn.data(), rows, ls.o, ls.q_head_begin * hd));
        continue;
      }
      for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(&attn[r * qw], qw, &gathered[r * s.q_width() + ls.q_head_begin * hd]);
      }
    }
    if (o_row_parallel) {
      ReduceRowParallel(o_slices, rows, h, Chunks(s.q_width()), rep.o_bias, proj.data());
    } else {
      ColumnParallel(
          shards, [](const ShardLayer& l) -> const Weight& { return l.o; }, gathered.data(), rows,
          h, rep.o_bias, proj.data());
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] = x[i] + proj[i];
    for (int64_t r = 0; r < rows; ++r) {
      ops::RmsNorm(&x[r * h], rep.post_norm.data(), h, eps, &xn[r * h]);
    }
    if (s.is_moe()) {
      MoeBlock(shards, xn.data(), rows, down_row_parallel, proj.data());
      for (size_t i = 0; i < x.size(); ++i) x[i] = x[i] + proj[i];
      continue;
    }
    std::vector<PartialSlice> down_slices;
    gathered.assign(down_row_parallel ? 0 : static_cast<size_t>(rows * s.intermediate_size), 0.0f);
    for (const ShardLayer& ls : shards) {
      std::vector<float> gate(static_cast<size_t>(rows * ls.f_count)), up(gate.size());
      MatMul(xn.data(), rows, ls.gate, OrNull(ls.gate_bias), gate.data());
      MatMul(xn.data(), rows, ls.up, OrNull(ls.up_bias), up.data());
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = ops::Silu(gate[i]) * up[i];
      if (down_row_parallel) {
        down_slices.push_back(ShardPartials(gate.data(), rows, ls.down, ls.f_begin));
        continue;
      }
      for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(&gate[r * ls.f_count], ls.f_count,
                    &gathered[r * s.intermediate_size + ls.f_begin]);
      }
    }
    if (down_row_parallel) {
      ReduceRowParallel(down_slices, rows, h, Chunks(s.intermediate_size), rep.down_bias,
                        proj.data());
    } else {
      ColumnParallel(
          shards, [](const ShardLayer& l) -> const Weight& { return l.down; }, gathered.data(),
          rows, h, rep.down_bias, proj.data());
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] = x[i] + proj[i];
  }

  // Final norm (replicated) and the vocab-parallel LM head: slices concatenated.
  std::vector<std::vector<float>> logits;
  std::vector<float> last(static_cast<size_t>(h));
  int64_t end = 0;
  for (ShardedStep& step : batch) {
    end += static_cast<int64_t>(step.tokens.size());
    ops::RmsNorm(&x[(end - 1) * h], shards_->final_norm.data(), h, eps, last.data());
    std::vector<float> out(static_cast<size_t>(s.vocab_size));
    for (const ShardWeights& v : shards_->head) {
      MatMul(last.data(), 1, v.head, nullptr, &out[static_cast<size_t>(v.vocab_begin)]);
    }
    logits.push_back(std::move(out));
    step.cache->length_ += static_cast<int64_t>(step.tokens.size());
  }
  return logits;
}

void ShardedModel::MoeBlock(const std::vector<ShardLayer>& shards, const float* xn, int64_t rows,
                            bool down_row_parallel, float* out) const {
  // ReferenceModel::MoeBlock with every expert split over the shards: the router is replicated
  // (every shard would route alike; shard 0's choice is used), each chosen expert's product is
  // reduced over the shards in the canonical order (row-parallel chunk partials, or a
  // column-parallel product of the gathered input), then weighted and added in ascending expert
  // order, as the reference adds them.
  const ModelSpec& s = spec_;
  const int64_t h = s.hidden_size, f = s.intermediate_size, experts = s.num_experts;
  std::vector<float> logits(static_cast<size_t>(rows * experts));
  MatMul(xn, rows, shards.front().router, nullptr, logits.data());
  const std::vector<ops::ExpertRows> chosen =
      ops::RouteRows(logits.data(), rows, experts, s.experts_per_token);
  std::fill(out, out + rows * h, 0.0f);
  for (int64_t e = 0; e < experts; ++e) {
    const std::vector<int64_t>& picked = chosen[static_cast<size_t>(e)].rows;
    const std::vector<float>& weight = chosen[static_cast<size_t>(e)].weights;
    if (picked.empty()) continue;
    const auto n = static_cast<int64_t>(picked.size());
    std::vector<float> xe(static_cast<size_t>(n * h)), y(xe.size());
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(xn + picked[static_cast<size_t>(i)] * h, h, &xe[static_cast<size_t>(i * h)]);
    }
    std::vector<PartialSlice> slices;
    std::vector<float> gathered(down_row_parallel ? 0 : static_cast<size_t>(n * f));
    for (const ShardLayer& ls : shards) {
      const ExpertWeights& x = ls.experts[static_cast<size_t>(e)];
      std::vector<float> gate(static_cast<size_t>(n * ls.f_count)), up(gate.size());
      MatMul(xe.data(), n, x.gate, nullptr, gate.data());
      MatMul(xe.data(), n, x.up, nullptr, up.data());
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = ops::Silu(gate[i]) * up[i];
      if (down_row_parallel) {
        slices.push_back(ShardPartials(gate.data(), n, x.down, ls.f_begin));
        continue;
      }
      for (int64_t r = 0; r < n; ++r) {
        std::copy_n(&gate[static_cast<size_t>(r * ls.f_count)], ls.f_count,
                    &gathered[static_cast<size_t>(r * f + ls.f_begin)]);
      }
    }
    if (down_row_parallel) {
      ReduceRowParallel(slices, n, h, Chunks(f), {}, y.data());
    } else {
      ColumnParallel(
          shards,
          [e](const ShardLayer& l) -> const Weight& {
            return l.experts[static_cast<size_t>(e)].down;
          },
          gathered.data(), n, h, {}, y.data());
    }
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + picked[static_cast<size_t>(i)] * h;
      const float wt = weight[static_cast<size_t>(i)];
      for (int64_t d = 0; d < h; ++d) o[d] = o[d] + y[static_cast<size_t>(i * h + d)] * wt;
    }
  }
}

}  // namespace lockstep::model
