#include <algorithm>
#include <cstdio>

#include "lockstep/common/error.h"
#include "lockstep/partition/plan.h"

namespace lockstep::partition {
namespace {

std::string Ms(int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(ns) / 1e3);
  return buf;
}

std::string Rate(double tokens_per_s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f tokens/s", tokens_per_s);
  return buf;
}

// True when a is better than b under the objective.
bool Better(const Prediction& a, const Prediction& b, Objective objective) {
  if (objective == Objective::kLatency) return a.token_latency_ns < b.token_latency_ns;
  return a.tokens_per_s > b.tokens_per_s;
}

void Add(LinkTimeParts t, TimeShares& s) {
  s.link_latency_ns += t.latency_ns;
  s.link_transfer_ns += t.serialization_ns;
  s.fixed_ns += t.fixed_ns;
}

}  // namespace

TimeShares& TimeShares::operator+=(const TimeShares& o) {
  compute_ns += o.compute_ns;
  weight_stream_ns += o.weight_stream_ns;
  memory_ns += o.memory_ns;
  link_transfer_ns += o.link_transfer_ns;
  link_latency_ns += o.link_latency_ns;
  fixed_ns += o.fixed_ns;
  return *this;
}

TimeShares StageShares(const Plan& plan, int stage) {
  if (stage < 0 || stage >= static_cast<int>(plan.stages.size())) {
    throw InvalidInput("stage " + std::to_string(stage) + " is not in the plan (it has " +
                       std::to_string(plan.stages.size()) + ")");
  }
  const StagePlan& st = plan.stages[static_cast<size_t>(stage)];
  const topology::Topology& topo = PlanTopology(plan);
  const topology::ChipSpec& chip = topo.spec_of(st.chips.front());
  Workload w = plan.workload;
  w.phase = Phase::kDecode;
  std::vector<OpCost> ops;
  if (st.has_embedding) ops = EmbeddingOps(plan.spec, w, st.tp);
  for (int64_t l = st.first_layer; l < st.end_layer; ++l) {
    const std::vector<OpCost> layer = LayerOps(plan.spec, w, st.tp, l);
    ops.insert(ops.end(), layer.begin(), layer.end());
  }
  if (st.has_head) {
    const std::vector<OpCost> head = HeadOps(plan.spec, w, st.tp);
    ops.insert(ops.end(), head.begin(), head.end());
  }
  // The partitioner's rule: a TP group within one node exchanges directly (placement never
  // splits such a group over two nodes).
  bool direct = true;
  for (topology::ChipId c : st.chips) direct &= topo.chip(c).node == topo.chip(st.chips[0]).node;
  const int node_size = direct ? 0 : HierarchicalNodeSize(plan.spec, topo, st.chips);
  const int64_t bw = chip.link_bandwidth_bytes_per_s;
  const int64_t lat = chip.link_latency_ns;
  const LinkCostParams& lp = plan.link_params;
  TimeShares s;
  for (const OpCost& op : ops) {
    const OpTime t = TimeOp(op, w.dtype, chip, plan.chip_params);
    s.fixed_ns += t.fixed_ns;
    const int64_t rest = t.ns - t.fixed_ns;
    switch (t.bound) {
      case Bound::kCompute:
        s.compute_ns += rest;
        break;
      case Bound::kWeightStream:
        s.weight_stream_ns += rest;
        break;
      case Bound::kMemory:
        s.memory_ns += rest;
        break;
      case Bound::kOverhead:
        // The fixed latency dominates; the (smaller) rest goes to the term it came from.
        if (rest == t.compute_ns) {
          s.compute_ns += rest;
        } else if (rest == t.weight_ns) {
          s.weight_stream_ns += rest;
        } else {
          s.memory_ns += rest;
        }
        break;
    }
    if (op.allreduce_bytes > 0 && st.tp > 1) {
      const AllReduceAlgorithm a =
          ChooseAllReduce(op.allreduce_bytes, st.tp, direct,
                          OneShotAllowed(plan.spec, st.tp, op.kind), bw, lat, lp, node_size);
      Add(AllReduceTimeParts(op.allreduce_bytes, st.tp, a, bw, lat, lp,
                             direct ? 0 : st.ring_chain_hops, node_size),
          s);
    }
    if (op.gather_bytes > 0 && st.tp > 1) {
      Add(TransferTimeParts(op.gather_bytes, direct ? 1 : st.gather_hops, bw, lat, lp), s);
      s.fixed_ns += lp.collective_step_overhead_ns;
    }
  }
  if (st.send_ns > 0) {
    const bool last = stage + 1 == static_cast<int>(plan.stages.size());
    const int64_t bytes =
        last ? w.batch * 4 : w.tokens() * plan.spec.hidden_size * DtypeBytes(w.dtype);
    Add(TransferTimeParts(bytes, st.send_hops, bw, lat, lp), s);
  }
  return s;
}

std::vector<Alternative> ExplainAlternatives(const ModelSpec& spec, const topology::Topology& topo,
                                             const PlanOptions& options, const Plan& chosen) {
  std::vector<Alternative> out;
  // Every TP degree the chosen plan could have used: try each as a uniform override; MakePlan
  // rejects the ones the model or topology cannot host (kInvalidInput), which are not
  // alternatives at all.
  for (int tp = 1; tp <= chosen.chips_available; tp = tp < 8 ? tp * 2 : tp + 8) {
    if (!TensorParallelProblem(spec, tp).empty()) continue;
    PlanOptions o = options;
    o.tp = tp;
    o.layout.clear();
    Alternative a;
    a.tp = tp;
    try {
      const Plan p = MakePlan(spec, topo, o);
      a.fits = true;
      a.chips_used = p.chips_used;
      a.stages = static_cast<int>(p.stages.size());
      a.predicted = p.predicted;
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kInvalidInput) continue;
      const OpCost layer = SumOps(LayerOps(spec, options.workload, tp));
      a.why = "does not fit: one layer needs " +
              std::to_string((layer.weight_bytes + layer.kv_resident_bytes) >> 20) +
              " MiB per chip at this degree, or the topology runs out of chips";
    }
    out.push_back(std::move(a));
  }
  std::stable_sort(out.begin(), out.end(), [&](const Alternative& x, const Alternative& y) {
    if (x.fits != y.fits) return x.fits;
    return x.fits && Better(x.predicted, y.predicted, options.objective);
  });
  const Prediction& best = chosen.predicted;
  for (Alternative& a : out) {
    if (!a.fits) continue;
    if (Better(a.predicted, best, options.objective)) {
      // Possible: the search estimates the hops between stages; placement knows them.
      a.why = "predicted better after placement than the search estimated";
    } else if (!Better(best, a.predicted, options.objective)) {
      a.why =
          a.chips_used > chosen.chips_used ? "same speed on more chips" : "ties the chosen plan";
    } else if (options.objective == Objective::kLatency) {
      a.why = "slower: " + Ms(a.predicted.token_latency_ns) + " per token vs " +
              Ms(best.token_latency_ns);
    } else {
      a.why =
          "less throughput: " + Rate(a.predicted.tokens_per_s) + " vs " + Rate(best.tokens_per_s);
    }
  }
  return out;
}

}  // namespace lockstep::partition
