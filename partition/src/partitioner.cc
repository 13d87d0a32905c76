#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "lockstep/common/error.h"
#include "lockstep/partition/cost_params.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/routing.h"

namespace lockstep::partition {
namespace {

// The units a plan splits into stages: the embedding, every layer, the LM head.
int64_t UnitCount(const ModelSpec& spec) { return spec.num_layers + 2; }

constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;

// What one unit kind (embedding, one layer, head) costs on one chip of a TP group of degree tp.
struct UnitCost {
  int64_t weight_bytes = 0;
  int64_t kv_bytes_per_sequence = 0;  // KV cache for one sequence at the workload's context
  int64_t activation_bytes = 0;       // largest op's activations (buffers are reused op to op)
  int64_t compute_ns = 0;             // decode step: ops
  int64_t collective_ns = 0;          // decode step: all-reduces / gathers
  int64_t prefill_ns = 0;             // the prompt: ops + collectives
};

struct DegreeCosts {
  int tp = 1;
  bool direct = true;  // all-reduce inside one fully connected node
  UnitCost embedding, layer, head;
};

// Everything the search needs, computed once.
struct Context {
  const ModelSpec* spec = nullptr;
  const topology::ChipSpec* chip = nullptr;
  ChipCostParams chip_params;
  LinkCostParams link_params;
  Workload decode;
  Workload prefill;
  int64_t sram_budget = 0;  // per chip, after the reserve
  int node_size = 1;
  int cross_node_hops = 3;  // PlanOptions::search_cross_node_hops
  std::vector<topology::ChipId> available;
  std::vector<DegreeCosts> degrees;
};

// Hops of the collectives of a group: the all-reduce's slowest chain (a ring's or a
// hierarchical one's; 0 = one per step), the gather's farthest rank, and the chips per node of
// a group that all-reduces hierarchically (0: a ring).
struct GroupHops {
  int64_t ring_chain = 0;
  int gather = 1;
  int node_size = 0;
};

// The collectives after `op` on a group of `tp`: one hop per step inside a node (`direct`),
// the group's routed hops otherwise.
int64_t CollectiveNs(const Context& cx, const OpCost& op, int tp, bool direct, GroupHops hops) {
  int64_t ns = 0;
  if (op.allreduce_bytes > 0) {
    const AllReduceAlgorithm algorithm =
        ChooseAllReduce(op.allreduce_bytes, tp, direct, OneShotAllowed(*cx.spec, tp, op.kind),
                        cx.chip->link_bandwidth_bytes_per_s, cx.chip->link_latency_ns,
                        cx.link_params, direct ? 0 : hops.node_size);
    ns += AllReduceTimeNs(op.allreduce_bytes, tp, algorithm, cx.chip->link_bandwidth_bytes_per_s,
                          cx.chip->link_latency_ns, cx.link_params, direct ? 0 : hops.ring_chain,
                          direct ? 0 : hops.node_size);
  }
  if (op.gather_bytes > 0) {
    ns += TransferTimeNs(op.gather_bytes, direct ? 1 : hops.gather,
                         cx.chip->link_bandwidth_bytes_per_s, cx.chip->link_latency_ns,
                         cx.link_params) +
          cx.link_params.collective_step_overhead_ns;
  }
  return ns;
}

int64_t CollectivesNs(const Context& cx, const std::vector<OpCost>& ops, int tp, bool direct,
                      GroupHops hops) {
  int64_t ns = 0;
  for (const OpCost& op : ops) ns += CollectiveNs(cx, op, tp, direct, hops);
  return ns;
}

// What the search assumes for a group of `tp` over several nodes: a ring, one hop between
// neighbours in a node, cross_node_hops between the last of one node and the first of the next.
// Placed, a group of whole nodes all-reduces hierarchically (3 steps instead of 2 x (tp - 1)) and
// its stage is priced so; the search keeps the ring's price, an upper bound, because with the
// hierarchical price it would choose TP 16 for Llama-2-70B on the 576 chips of the Groq point the
// cost model is calibrated to (~300 tokens/s per user; it would predict ~730): that layout needs
// the calibration revisited first (issue #21).
GroupHops SearchHops(const Context& cx, int tp) {
  std::vector<int> pairs(static_cast<size_t>(tp), 1);
  for (int r = cx.node_size - 1; r < tp; r += cx.node_size) {
    pairs[static_cast<size_t>(r)] = cx.cross_node_hops;
  }
  return {RingChainHops(pairs), cx.cross_node_hops, 0};
}

UnitCost CostOf(const Context& cx, const std::vector<OpCost>& decode_ops,
                const std::vector<OpCost>& prefill_ops, int tp, bool direct) {
  UnitCost u;
  for (const OpCost& op : decode_ops) {
    u.weight_bytes += op.weight_bytes;
    u.kv_bytes_per_sequence += op.kv_resident_bytes;
    u.activation_bytes = std::max(u.activation_bytes, op.activation_bytes);
    u.compute_ns += TimeOp(op, cx.decode.dtype, *cx.chip, cx.chip_params).ns;
    u.collective_ns += CollectiveNs(cx, op, tp, direct, SearchHops(cx, tp));
  }
  u.kv_bytes_per_sequence /= cx.decode.batch;
  for (const OpCost& op : prefill_ops) {
    u.prefill_ns += TimeOp(op, cx.decode.dtype, *cx.chip, cx.chip_params).ns +
                    CollectiveNs(cx, op, tp, direct, SearchHops(cx, tp));
  }
  return u;
}

// TP degrees the topology can host: divisors of the node size, or whole multiples of it.
std::vector<int> CandidateDegrees(int node_size, int chips) {
  std::vector<int> out;
  for (int t = 1; t <= node_size && t <= chips; ++t) {
    if (node_size % t == 0) out.push_back(t);
  }
  for (int t = 2 * node_size; t <= chips; t += node_size) out.push_back(t);
  return out;
}

std::string Gib(int64_t bytes) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(1);
  s << static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0) << " GiB";
  return s.str();
}

struct Step {
  int16_t k = 0;  // units in the stage
  int16_t d = 0;  // index into Context::degrees
};

// A stage [u, u+k) at degree index d: per-chip memory (with `sequences` sequences of KV cache)
// and its decode time; nullopt when it does not fit.
struct StageCost {
  int64_t memory = 0;
  int64_t weight = 0, kv = 0, activation = 0;
  int64_t compute_ns = 0, collective_ns = 0, prefill_ns = 0;
};

std::optional<StageCost> CostStage(const Context& cx, int64_t units, int64_t u, int64_t k,
                                   const DegreeCosts& dc, int64_t sequences) {
  const bool emb = u == 0;
  const bool head = u + k == units;
  const int64_t layers = k - (emb ? 1 : 0) - (head ? 1 : 0);
  if (layers < 0) return std::nullopt;
  StageCost s;
  auto add = [&](const UnitCost& c, int64_t n) {
    if (n == 0) return;
    s.weight += n * c.weight_bytes;
    s.kv += n * c.kv_bytes_per_sequence * sequences;
    s.activation = std::max(s.activation, 2 * c.activation_bytes);  // double-buffered
    s.compute_ns += n * c.compute_ns;
    s.collective_ns += n * c.collective_ns;
    s.prefill_ns += n * c.prefill_ns;
  };
  add(dc.embedding, emb ? 1 : 0);
  add(dc.layer, layers);
  add(dc.head, head ? 1 : 0);
  s.memory = s.weight + s.kv + s.activation;
  if (s.memory > cx.sram_budget) return std::nullopt;
  return s;
}

struct SearchResult {
  bool found = false;
  std::vector<std::pair<int64_t, int>> stages;  // (units, degree index)
};

// Dynamic program over (stages so far if pp is fixed, units covered, chips used).
SearchResult Search(const Context& cx, const PlanOptions& options, int64_t sequences) {
  const int64_t units = UnitCount(*cx.spec);
  const int64_t chips = static_cast<int64_t>(cx.available.size());
  const int64_t stage_dim = options.pp ? *options.pp + 1 : 1;
  const int64_t states = stage_dim * (units + 1) * (chips + 1);
  if (states > 60'000'000) {
    throw InvalidInput("--pp " + std::to_string(*options.pp) + " on " + std::to_string(chips) +
                       " chips is too large a search; give --tp as well or fewer chips");
  }
  auto index = [&](int64_t s, int64_t u, int64_t c) {
    return (s * (units + 1) + u) * (chips + 1) + c;
  };
  // Value: (primary, secondary), compared lexicographically.
  std::vector<std::pair<int64_t, int64_t>> best(static_cast<size_t>(states), {kInf, kInf});
  std::vector<Step> from(static_cast<size_t>(states));
  best[index(0, 0, 0)] = {0, 0};
  const int64_t hop_bytes = cx.decode.tokens() * cx.spec->hidden_size * DtypeBytes(cx.decode.dtype);
  const int64_t send_ns =
      TransferTimeNs(hop_bytes, options.search_hops_between_stages,
                     cx.chip->link_bandwidth_bytes_per_s, cx.chip->link_latency_ns, cx.link_params);
  const int64_t return_ns =
      TransferTimeNs(cx.decode.batch * 4, options.search_hops_between_stages,
                     cx.chip->link_bandwidth_bytes_per_s, cx.chip->link_latency_ns, cx.link_params);
  const bool latency = options.objective == Objective::kLatency;
  for (int64_t s = 0; s < stage_dim; ++s) {
    const int64_t next_s = options.pp ? s + 1 : 0;
    if (options.pp && next_s >= stage_dim) break;
    for (int64_t u = 0; u < units; ++u) {
      for (int64_t c = 0; c < chips; ++c) {
        const auto cur = best[index(s, u, c)];
        if (cur.first >= kInf) continue;
        for (size_t d = 0; d < cx.degrees.size(); ++d) {
          const DegreeCosts& dc = cx.degrees[d];
          if (c + dc.tp > chips) break;  // degrees ascend
          for (int64_t k = 1; u + k <= units; ++k) {
            std::optional<StageCost> sc = CostStage(cx, units, u, k, dc, sequences);
            if (!sc) break;  // memory only grows with k
            const int64_t stage_ns = sc->compute_ns + sc->collective_ns;
            // A single stage keeps the token on its chips; the last stage returns it to the
            // first.
            const int64_t out_ns = u + k < units ? send_ns : (u == 0 ? 0 : return_ns);
            const int64_t path = cur.second + stage_ns + out_ns;  // throughput's secondary
            // Latency: the token's path, then (among equal paths, e.g. a fixed --pp on chips
            // whose time is the same wherever a layer goes) the slowest stage, so the layers
            // spread evenly and sequences in the pipeline's slots overlap. Throughput: the
            // slowest stage, then the path.
            const std::pair<int64_t, int64_t> value =
                latency ? std::pair<int64_t, int64_t>{cur.first + stage_ns + out_ns,
                                                      std::max(cur.second, stage_ns)}
                        : std::pair<int64_t, int64_t>{
                              std::max(cur.first, std::max(stage_ns, out_ns)), path};
            const int64_t to = index(next_s, u + k, c + dc.tp);
            if (value < best[to]) {
              best[to] = value;
              from[to] = Step{static_cast<int16_t>(k), static_cast<int16_t>(d)};
            }
          }
        }
      }
    }
  }
  SearchResult r;
  const int64_t final_s = options.pp ? *options.pp : 0;
  int64_t best_c = -1;
  for (int64_t c = 1; c <= chips; ++c) {
    if (best[index(final_s, units, c)].first >= kInf) continue;
    if (best_c < 0 || best[index(final_s, units, c)] < best[index(final_s, units, best_c)]) {
      best_c = c;
    }
  }
  if (best_c < 0) return r;
  r.found = true;
  int64_t u = units, c = best_c, s = final_s;
  while (u > 0) {
    const Step st = from[index(s, u, c)];
    r.stages.emplace_back(st.k, st.d);
    u -= st.k;
    c -= cx.degrees[st.d].tp;
    if (options.pp) --s;
  }
  std::reverse(r.stages.begin(), r.stages.end());
  return r;
}

// The explicit layout as a search result; checks coverage and memory.
SearchResult FromLayout(const Context& cx, const PlanOptions& options, const std::string& topo) {
  const int64_t units = UnitCount(*cx.spec);
  SearchResult r;
  int64_t u = 0, used = 0;
  for (size_t i = 0; i < options.layout.size(); ++i) {
    const auto& [k, t] = options.layout[i];
    const std::string stage = "layout stage " + std::to_string(i);
    if (k < 1 || u + k > units) {
      throw InvalidInput(stage + " has " + std::to_string(k) + " units; the model has " +
                         std::to_string(units) + " (embedding, " +
                         std::to_string(cx.spec->num_layers) + " layers, LM head) and " +
                         std::to_string(units - u) + " remain");
    }
    size_t d = 0;
    while (cx.degrees[d].tp != t) ++d;  // MakePlan put every layout degree in cx.degrees
    if (!CostStage(cx, units, u, k, cx.degrees[d], cx.decode.batch)) {
      throw Error(ErrorCode::kCannotFit, stage + " (units " + std::to_string(u) + "-" +
                                             std::to_string(u + k - 1) + ", TP " +
                                             std::to_string(t) + ") does not fit in " +
                                             Gib(cx.sram_budget) + " per chip");
    }
    r.stages.emplace_back(k, static_cast<int>(d));
    u += k;
    used += t;
  }
  if (u != units) {
    throw InvalidInput("layout covers " + std::to_string(u) + " of " + std::to_string(units) +
                       " units (embedding, " + std::to_string(cx.spec->num_layers) +
                       " layers, LM head)");
  }
  if (used > static_cast<int64_t>(cx.available.size())) {
    throw Error(ErrorCode::kCannotFit, "layout needs " + std::to_string(used) + " chips; " + topo +
                                           " has " + std::to_string(cx.available.size()) +
                                           " usable");
  }
  r.found = true;
  return r;
}

// The farthest routed pair among `pairs` (at least 1): store-and-forward hops of the slowest
// transfer of a set that runs at once.
int FarthestPair(topology::Router& router,
                 const std::vector<std::pair<topology::ChipId, topology::ChipId>>& pairs) {
  int hops = 1;
  for (const auto& [a, b] : pairs) {
    if (a != b) hops = std::max(hops, router.Distance(a, b));
  }
  return hops;
}

// The first position from `cursor` where `tp` available chips are whole nodes of `node_size`
// chips each (every node's chips in a run of their own); `cursor` when there is none.
size_t WholeNodesFrom(const topology::Topology& topo, const std::vector<topology::ChipId>& chips,
                      size_t cursor, int tp, int node_size) {
  auto node = [&](size_t i) { return topo.chip(chips[i]).node; };
  const auto g = static_cast<size_t>(tp), n = static_cast<size_t>(node_size);
  for (size_t c = cursor; c + g <= chips.size(); ++c) {
    if (c > 0 && node(c - 1) == node(c)) continue;  // not the first chip of its node
    bool whole = c + g == chips.size() || node(c + g) != node(c + g - 1);
    for (size_t i = 1; i < g && whole; ++i) {
      whole = (node(c + i) == node(c + i - 1)) == (i % n != 0);
    }
    if (whole) return c;
  }
  return cursor;
}

// Smallest chip count that would hold the model: uniform TP, stages packed greedily.
std::optional<std::pair<int64_t, int>> SmallestFit(const Context& cx, int64_t sequences) {
  const int64_t units = UnitCount(*cx.spec);
  std::optional<std::pair<int64_t, int>> best;
  for (int t : CandidateDegrees(cx.node_size, 1 << 16)) {
    if (!TensorParallelProblem(*cx.spec, t).empty()) continue;
    if (t > (1 << 14)) break;
    DegreeCosts dc;
    dc.tp = t;
    dc.direct = t <= cx.node_size;
    dc.embedding = CostOf(cx, EmbeddingOps(*cx.spec, cx.decode, t), {}, t, dc.direct);
    dc.layer = CostOf(cx, LayerOps(*cx.spec, cx.decode, t), {}, t, dc.direct);
    dc.head = CostOf(cx, HeadOps(*cx.spec, cx.decode, t), {}, t, dc.direct);
    int64_t stages = 0;
    bool ok = true;
    for (int64_t u = 0; u < units && ok;) {
      int64_t k = 1;
      if (!CostStage(cx, units, u, 1, dc, sequences)) {
        ok = false;
        break;
      }
      while (u + k < units && CostStage(cx, units, u, k + 1, dc, sequences)) ++k;
      u += k;
      ++stages;
    }
    if (!ok) continue;
    if (!best || stages * t < best->first) best = std::pair<int64_t, int>{stages * t, t};
  }
  return best;
}

}  // namespace

std::string_view ObjectiveName(Objective objective) {
  return objective == Objective::kLatency ? "latency" : "throughput";
}

std::optional<Objective> ParseObjective(std::string_view name) {
  if (name == "latency") return Objective::kLatency;
  if (name == "throughput") return Objective::kThroughput;
  return std::nullopt;
}

Plan MakePlan(const ModelSpec& spec, const topology::Topology& topo, const PlanOptions& options) {
  Context cx;
  cx.spec = &spec;
  cx.decode = options.workload;
  cx.decode.phase = Phase::kDecode;
  if (cx.decode.batch < 1 || cx.decode.context < 1) {
    throw InvalidInput("batch and context must be >= 1, got batch " +
                       std::to_string(cx.decode.batch) + ", context " +
                       std::to_string(cx.decode.context));
  }
  if (options.prompt_len < 0) throw InvalidInput("prompt length must be >= 0");
  cx.prefill = cx.decode;
  cx.prefill.phase = Phase::kPrefill;
  cx.prefill.context = options.prompt_len > 0 ? options.prompt_len : cx.decode.context;
  if (options.pp && *options.pp < 1) throw InvalidInput("--pp must be >= 1");

  for (const topology::Chip& c : topo.chips()) {
    if (!c.spare && !c.down) cx.available.push_back(c.id);
  }
  if (cx.available.empty()) {
    throw Error(ErrorCode::kCannotFit,
                "topology " + topo.name() + " has no usable chips (all are spares or down)");
  }
  cx.chip = &topo.spec_of(cx.available.front());
  for (topology::ChipId id : cx.available) {
    if (!(topo.spec_of(id) == *cx.chip)) {
      throw InvalidInput("topology " + topo.name() +
                         " mixes chip types; the partitioner plans one chip type at a time");
    }
  }
  cx.chip_params = options.chip_params.value_or(CostParamsFor(*cx.chip));
  cx.link_params = options.link_params.value_or(LinkCostParamsFor(*cx.chip));
  cx.sram_budget =
      cx.chip->sram_bytes - static_cast<int64_t>(static_cast<double>(cx.chip->sram_bytes) *
                                                 options.sram_reserve_fraction);
  {
    const int first_node = topo.chip(cx.available.front()).node;
    cx.cross_node_hops = std::max(1, options.search_cross_node_hops);
    cx.node_size = 0;
    for (topology::ChipId id : cx.available) cx.node_size += topo.chip(id).node == first_node;
  }
  const int chips = static_cast<int>(cx.available.size());

  std::vector<int> allowed;
  for (int t : CandidateDegrees(cx.node_size, chips)) {
    if (TensorParallelProblem(spec, t).empty()) allowed.push_back(t);
  }
  std::vector<int> wanted;
  if (options.tp) wanted.push_back(*options.tp);
  for (const auto& [k, t] : options.layout) {
    if (std::find(wanted.begin(), wanted.end(), t) == wanted.end()) wanted.push_back(t);
  }
  std::sort(wanted.begin(), wanted.end());
  for (int want : wanted) {
    if (std::find(allowed.begin(), allowed.end(), want) != allowed.end()) continue;
    std::string list;
    for (int t : allowed) list += (list.empty() ? "" : ", ") + std::to_string(t);
    std::string why = TensorParallelProblem(spec, want);
    if (why.empty()) {
      why = "TP groups must divide the node size " + std::to_string(cx.node_size) +
            " or be whole nodes, within " + std::to_string(chips) + " usable chips";
    }
    throw InvalidInput("tp " + std::to_string(want) + ": " + why + " (usable: " + list + ")");
  }
  if (!wanted.empty()) allowed = wanted;
  for (int t : allowed) {
    DegreeCosts dc;
    dc.tp = t;
    dc.direct = t <= cx.node_size;
    dc.embedding = CostOf(cx, EmbeddingOps(spec, cx.decode, t), EmbeddingOps(spec, cx.prefill, t),
                          t, dc.direct);
    dc.layer =
        CostOf(cx, LayerOps(spec, cx.decode, t), LayerOps(spec, cx.prefill, t), t, dc.direct);
    dc.head = CostOf(cx, HeadOps(spec, cx.decode, t), HeadOps(spec, cx.prefill, t), t, dc.direct);
    cx.degrees.push_back(dc);
  }

  // A stage count the search cannot reach is a usage error, not a model too large.
  if (options.pp && options.layout.empty()) {
    const int64_t units = UnitCount(spec);
    if (*options.pp > units) {
      throw InvalidInput("--pp " + std::to_string(*options.pp) + ": " + spec.name + " has " +
                         std::to_string(units) + " units to split into stages (the embedding, " +
                         std::to_string(spec.num_layers) + " layers, the LM head): at most " +
                         std::to_string(units) + " stages");
    }
    const int64_t least = *options.pp * allowed.front();
    if (least > chips) {
      // kCannotFit: a larger system has the chips (capacity planning goes on to it).
      throw Error(ErrorCode::kCannotFit, "--pp " + std::to_string(*options.pp) + " x TP " +
                                             std::to_string(allowed.front()) + " needs " +
                                             std::to_string(least) + " chips; " + topo.name() +
                                             " has " + std::to_string(chips) + " usable");
    }
  }

  // Latency: one micro-batch, so the stages hold KV cache for `batch` sequences. Throughput:
  // m micro-batches in flight fill up to m stages but multiply the KV cache by m, so try m = 1,
  // 2, 4, ... and keep the m whose plan gives the most tokens/s (the DP itself minimises the
  // slowest stage for a given m).
  int64_t in_flight = 1;
  SearchResult found;
  if (!options.layout.empty()) {
    found = FromLayout(cx, options, topo.name());
  } else {
    found = Search(cx, options, cx.decode.batch);
  }
  if (options.objective == Objective::kThroughput && found.found && options.layout.empty()) {
    auto rate = [&](const SearchResult& r, int64_t m) {
      const int64_t units_total = UnitCount(spec);
      int64_t latency_ns = 0, interval_ns = 0, u0 = 0;
      for (const auto& [k, d] : r.stages) {
        const StageCost sc = *CostStage(cx, units_total, u0, k, cx.degrees[static_cast<size_t>(d)],
                                        cx.decode.batch * m);
        const int64_t stage_ns = sc.compute_ns + sc.collective_ns;
        latency_ns += stage_ns;
        interval_ns = std::max(interval_ns, stage_ns);
        u0 += k;
      }
      return static_cast<double>(m) / static_cast<double>(std::max(latency_ns, m * interval_ns));
    };
    double best_rate = rate(found, 1);
    const int64_t cap = options.max_micro_batches > 0 ? options.max_micro_batches : chips;
    for (int64_t m = 2; m <= cap; m *= 2) {
      SearchResult r = Search(cx, options, cx.decode.batch * m);
      if (!r.found) break;
      const double candidate = rate(r, m);
      if (candidate > best_rate) {
        best_rate = candidate;
        found = std::move(r);
        in_flight = m;
      }
    }
  }
  if (!found.found) {
    const ParameterCounts pc = CountParameters(spec);
    const int64_t kv = KvCacheBytesPerToken(spec, cx.decode.dtype) * cx.decode.context *
                       cx.decode.batch * in_flight;
    std::string msg = spec.name + " (" + std::string(DtypeName(cx.decode.dtype)) + ", batch " +
                      std::to_string(cx.decode.batch) + ", context " +
                      std::to_string(cx.decode.context) + ") does not fit on " + topo.name() +
                      ": it needs " + Gib(pc.total * DtypeBytes(cx.decode.dtype)) +
                      " of weights + " + Gib(kv) + " of KV cache; the topology has " +
                      std::to_string(chips) + " usable " + cx.chip->name + " chips x " +
                      Gib(cx.sram_budget) +
                      " usable SRAM = " + Gib(cx.sram_budget * static_cast<int64_t>(chips));
    if (options.tp || options.pp) msg += " with the given --tp/--pp";
    if (std::optional<std::pair<int64_t, int>> need =
            SmallestFit(cx, cx.decode.batch * in_flight)) {
      const int64_t per_rack = std::max<int64_t>(1, chips / std::max(1, topo.rack_count()));
      msg += "; the smallest system that fits has " + std::to_string(need->first) + " chips (TP " +
             std::to_string(need->second) + "), " +
             std::to_string((need->first + per_rack - 1) / per_rack) + " racks of " +
             std::to_string(per_rack) + " usable chips";
    } else {
      msg += "; no TP degree up to 16384 chips per stage fits one unit";
    }
    throw Error(ErrorCode::kCannotFit, msg);
  }

  // Placement: TP groups take chips in id order; a group that fits in a node never straddles
  // two.
  Plan plan;
  plan.model = spec.name;
  plan.topology = topo.name();
  plan.chip = cx.chip->name;
  plan.objective = options.objective;
  plan.workload = cx.decode;
  plan.prompt_len = cx.prefill.context;
  plan.chips_available = chips;
  plan.spec = spec;
  plan.system.topology = topo;
  plan.chip_params = cx.chip_params;
  plan.link_params = cx.link_params;
  plan.runtime_params = options.runtime_params.value_or(CostParamsForChip(*cx.chip).runtime);
  plan.cost_params_name =
      options.cost_params_name.empty() ? cx.chip->name : options.cost_params_name;
  const int64_t units = UnitCount(spec);
  size_t cursor = 0;
  int64_t u = 0;
  // Placed chips are routed as the schedule routes them: a ring over several nodes and the
  // sends between stages take their routes' hops, not the search's estimates.
  topology::Router router(topo);
  size_t unplaced = 0;  // chips of the stages not yet placed
  for (const auto& [k, d] : found.stages) {
    unplaced += static_cast<size_t>(cx.degrees[static_cast<size_t>(d)].tp);
  }
  for (const auto& [k, d] : found.stages) {
    const DegreeCosts& dc = cx.degrees[static_cast<size_t>(d)];
    if (dc.tp > cx.node_size) {
      // A group wider than a node starts a node when the chips left allow, so that it is whole
      // nodes and all-reduces hierarchically (HierarchicalNodeSize).
      const size_t at = WholeNodesFrom(topo, cx.available, cursor, dc.tp, cx.node_size);
      if (at + unplaced <= cx.available.size()) cursor = at;
    }
    unplaced -= static_cast<size_t>(dc.tp);
    StagePlan st;
    st.index = static_cast<int>(plan.stages.size());
    st.first_unit = u;
    st.end_unit = u + k;
    st.has_embedding = u == 0;
    st.has_head = u + k == units;
    st.first_layer = std::max<int64_t>(0, u - 1);
    st.end_layer = std::min<int64_t>(spec.num_layers, u + k - 1);
    st.tp = dc.tp;
    while (true) {
      if (cursor + static_cast<size_t>(dc.tp) > cx.available.size()) {
        throw Error(ErrorCode::kCannotFit,
                    "placement on " + topo.name() +
                        " ran out of chips: nodes with down chips break TP groups apart");
      }
      const int node = topo.chip(cx.available[cursor]).node;
      const int end_node = topo.chip(cx.available[cursor + dc.tp - 1]).node;
      if (dc.tp > cx.node_size || node == end_node) break;
      ++cursor;
    }
    for (int i = 0; i < dc.tp; ++i) st.chips.push_back(cx.available[cursor++]);
    const StageCost sc = *CostStage(cx, units, u, k, dc, cx.decode.batch * in_flight);
    st.weight_bytes = sc.weight;
    st.kv_bytes = sc.kv;
    st.activation_bytes = sc.activation;
    st.memory_bytes = sc.memory;
    st.headroom_bytes = cx.chip->sram_bytes - sc.memory;
    st.compute_ns = sc.compute_ns;
    st.collective_ns = sc.collective_ns;
    st.prefill_ns = sc.prefill_ns;
    if (!dc.direct) {
      // The all-reduce's chain (hierarchical: 2 + the farthest pair exchanging across nodes;
      // ring: its neighbours) and every rank's gather to rank 0, as routed.
      const int node_size = HierarchicalNodeSize(spec, topo, st.chips);
      std::vector<int> ring;
      std::vector<std::pair<topology::ChipId, topology::ChipId>> gather, across;
      for (int r = 0; r < st.tp; ++r) {
        ring.push_back(FarthestPair(router, {{st.chips[r], st.chips[(r + 1) % st.tp]}}));
        gather.emplace_back(st.chips[r], st.chips[0]);
        if (node_size > 0) {
          for (int q = r % node_size; q < st.tp; q += node_size) {
            if (q != r) across.emplace_back(st.chips[r], st.chips[q]);
          }
        }
      }
      const GroupHops placed{node_size > 0 ? 2 + FarthestPair(router, across) : RingChainHops(ring),
                             FarthestPair(router, gather), node_size};
      st.ring_chain_hops = placed.ring_chain;
      st.gather_hops = placed.gather;
      const int64_t layers = st.end_layer - st.first_layer;
      auto collectives = [&](const Workload& w, GroupHops hops) {
        int64_t ns = layers * CollectivesNs(cx, LayerOps(spec, w, st.tp), st.tp, false, hops);
        if (st.has_embedding)
          ns += CollectivesNs(cx, EmbeddingOps(spec, w, st.tp), st.tp, false, hops);
        if (st.has_head) ns += CollectivesNs(cx, HeadOps(spec, w, st.tp), st.tp, false, hops);
        return ns;
      };
      st.collective_ns = collectives(cx.decode, placed);
      st.prefill_ns +=
          collectives(cx.prefill, placed) - collectives(cx.prefill, SearchHops(cx, st.tp));
    }
    st.stage_ns = st.compute_ns + st.collective_ns;
    plan.stages.push_back(std::move(st));
    u += k;
  }
  // Sends, with the hops of the real placement.
  Prediction& p = plan.predicted;
  const int64_t h_bytes = spec.hidden_size * DtypeBytes(cx.decode.dtype);
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    StagePlan& st = plan.stages[i];
    const bool last = i + 1 == plan.stages.size();
    const StagePlan& next = plan.stages[last ? 0 : i + 1];
    // The compiler sends from rank r % tp to each rank r of the next stage; the last stage's
    // rank 0 sends the token to every rank of the first.
    std::vector<std::pair<topology::ChipId, topology::ChipId>> pairs;
    for (size_t r = 0; r < next.chips.size(); ++r) {
      pairs.emplace_back(last ? st.chips[0] : st.chips[r % st.chips.size()], next.chips[r]);
    }
    st.send_hops = FarthestPair(router, pairs);
    const int64_t bytes = last ? cx.decode.batch * 4 : cx.decode.tokens() * h_bytes;
    st.send_ns = plan.stages.size() == 1 && last
                     ? 0
                     : TransferTimeNs(bytes, st.send_hops, cx.chip->link_bandwidth_bytes_per_s,
                                      cx.chip->link_latency_ns, cx.link_params);
    if (!last) {
      st.prefill_ns += TransferTimeNs(cx.prefill.tokens() * h_bytes, st.send_hops,
                                      cx.chip->link_bandwidth_bytes_per_s, cx.chip->link_latency_ns,
                                      cx.link_params);
    }
    p.token_latency_ns += st.stage_ns + st.send_ns;
    p.time_to_first_token_ns += st.prefill_ns;
    const int64_t interval = std::max(st.stage_ns, st.send_ns);
    if (interval > p.interval_ns) {
      p.interval_ns = interval;
      p.bottleneck_stage = st.index;
    }
    plan.chips_used += st.tp;
    if (st.send_ns > 0) {
      p.link_bound_ns += static_cast<int64_t>(st.send_hops) * (cx.link_params.hop_latency_ns >= 0
                                                                   ? cx.link_params.hop_latency_ns
                                                                   : cx.chip->link_latency_ns);
    }
  }
  // Micro-batches whose KV cache the stages hold (throughput), or one sequence's (latency).
  p.micro_batches_in_flight = options.objective == Objective::kLatency ? 1 : in_flight;
  const int64_t cycle = std::max(p.token_latency_ns, p.micro_batches_in_flight * p.interval_ns);
  p.tokens_per_s_per_user = 1e9 / static_cast<double>(cycle);
  p.tokens_per_s = p.tokens_per_s_per_user * static_cast<double>(cx.decode.batch) *
                   static_cast<double>(p.micro_batches_in_flight);
  const OpCost all = SumOps(ModelOps(spec, cx.decode, 1));
  const int64_t used = plan.chips_used;
  const int64_t stream =
      cx.chip_params.weight_stream_bytes_per_s > 0
          ? cx.chip_params.weight_stream_bytes_per_s
          : static_cast<int64_t>(static_cast<double>(cx.chip->memory_bandwidth_bytes_per_s) *
                                 cx.chip_params.weight_stream_fraction);
  const double peak = static_cast<double>(cx.chip->peak_ops(cx.decode.dtype)) *
                      cx.chip_params.matrix_efficiency * static_cast<double>(used);
  p.compute_bound_ns =
      peak > 0 ? static_cast<int64_t>(static_cast<double>(all.flops) / peak * 1e9) : 0;
  p.weight_stream_bound_ns =
      static_cast<int64_t>(static_cast<double>(all.weight_read_bytes + all.kv_bytes) /
                           (static_cast<double>(stream) * static_cast<double>(used)) * 1e9);
  return plan;
}

int64_t RuntimeTokenNs(const Plan& plan) {
  const RuntimeCostParams& r = plan.runtime_params;
  return r.control_hops * r.control_hop_ns + r.step_overhead_ns;
}

int64_t RuntimeStepNs(const Plan& plan, int64_t schedule_step_ns, int64_t compute_ns) {
  if (schedule_step_ns < 0 || compute_ns < 0) {
    throw InvalidInput("RuntimeStepNs: negative schedule step or compute time");
  }
  const RuntimeCostParams& r = plan.runtime_params;
  // Chips that compute at the same time take turns on the shared cores.
  const int64_t shared = r.cores > 0 ? (compute_ns + r.cores - 1) / r.cores : 0;
  // ... and share the memory their weights stream from: all the step's compute at the rate the
  // cores stream together (one division, rounded up to whole ns).
  const int64_t own = plan.chip_params.weight_stream_bytes_per_s;
  const int64_t together = r.shared_weight_stream_bytes_per_s;
  const int64_t memory = own > 0 && together > 0
                             ? static_cast<int64_t>(std::ceil(static_cast<double>(compute_ns) *
                                                              static_cast<double>(own) /
                                                              static_cast<double>(together)))
                             : 0;
  return std::max({schedule_step_ns, shared, memory}) + RuntimeTokenNs(plan);
}

std::vector<std::string> VerifyPlan(const Plan& plan, const ModelSpec& spec,
                                    const topology::Topology& topo) {
  std::vector<std::string> problems;
  const int64_t units = UnitCount(spec);
  int64_t expect = 0;
  std::set<topology::ChipId> seen;
  int used = 0;
  for (const StagePlan& st : plan.stages) {
    const std::string name = "stage " + std::to_string(st.index);
    if (st.first_unit != expect || st.end_unit <= st.first_unit) {
      problems.push_back(name + " covers units [" + std::to_string(st.first_unit) + ", " +
                         std::to_string(st.end_unit) + "), expected to start at " +
                         std::to_string(expect));
    }
    expect = st.end_unit;
    if (st.has_embedding != (st.first_unit == 0) || st.has_head != (st.end_unit == units)) {
      problems.push_back(name + " embedding/head flags disagree with its units");
    }
    if (st.first_layer != std::max<int64_t>(0, st.first_unit - 1) ||
        st.end_layer != std::min<int64_t>(spec.num_layers, st.end_unit - 1)) {
      problems.push_back(name + " layer range disagrees with its units");
    }
    if (static_cast<int>(st.chips.size()) != st.tp) {
      problems.push_back(name + " has " + std::to_string(st.chips.size()) + " chips for TP " +
                         std::to_string(st.tp));
    }
    if (std::string why = TensorParallelProblem(spec, st.tp); !why.empty()) {
      problems.push_back(name + ": " + why);
    }
    for (topology::ChipId c : st.chips) {
      ++used;
      if (!topo.has_chip(c)) {
        problems.push_back(name + " uses chip " + std::to_string(c) + " that does not exist");
        continue;
      }
      if (!seen.insert(c).second) problems.push_back("chip " + std::to_string(c) + " used twice");
      if (topo.chip(c).spare) problems.push_back(name + " uses spare chip " + std::to_string(c));
      if (topo.chip(c).down) problems.push_back(name + " uses down chip " + std::to_string(c));
      if (st.memory_bytes > topo.spec_of(c).sram_bytes) {
        problems.push_back(name + " needs " + std::to_string(st.memory_bytes) + " bytes on chip " +
                           std::to_string(c) + ", SRAM holds " +
                           std::to_string(topo.spec_of(c).sram_bytes));
      }
    }
    if (st.memory_bytes != st.weight_bytes + st.kv_bytes + st.activation_bytes) {
      problems.push_back(name + " memory is not weights + KV + activations");
    }
  }
  if (expect != units) {
    problems.push_back("stages cover units [0, " + std::to_string(expect) + "), expected [0, " +
                       std::to_string(units) + ")");
  }
  if (used != plan.chips_used) problems.push_back("chips_used disagrees with the stages");
  return problems;
}

}  // namespace lockstep::partition
