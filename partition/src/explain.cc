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

}  // namespace

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
