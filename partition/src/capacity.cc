#include <cstdio>

#include "lockstep/common/error.h"
#include "lockstep/partition/plan.h"

namespace lockstep::partition {

CapacityResult PlanCapacity(const ModelSpec& spec, const topology::ChipSpec& chip,
                            const topology::RackShape& shape, const PlanOptions& options,
                            double target_tokens_per_s) {
  if (!(target_tokens_per_s > 0)) {
    throw InvalidInput("target tokens/s must be > 0, got " + std::to_string(target_tokens_per_s));
  }
  double best_rate = 0;
  std::string best_system = "none fits the model";
  const int max_racks = topology::MaxSystemRacks(chip, shape);
  for (int racks = 0; racks <= max_racks; ++racks) {
    CapacityResult r;
    r.racks = racks;
    if (racks == 0) {
      r.topology = topology::GenerateNode(chip, shape.chips_per_node);
    } else if (racks == 1) {
      r.topology = topology::GenerateRack(chip, shape);
    } else {
      r.topology = topology::GenerateSystem(chip, racks, shape);
    }
    try {
      r.plan = MakePlan(spec, r.topology, options);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kCannotFit) continue;
      throw;
    }
    if (r.plan.predicted.tokens_per_s >= target_tokens_per_s) return r;
    if (r.plan.predicted.tokens_per_s > best_rate) {
      best_rate = r.plan.predicted.tokens_per_s;
      best_system = racks == 0 ? "one node" : std::to_string(racks) + " racks";
    }
  }
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.1f", best_rate);
  char target[64];
  std::snprintf(target, sizeof target, "%.1f", target_tokens_per_s);
  throw Error(ErrorCode::kCannotFit, spec.name + ": no system of up to " +
                                         std::to_string(max_racks) + " racks of " + chip.name +
                                         " reaches " + target + " tokens/s; the best is " + rate +
                                         " tokens/s (" + best_system + ")");
}

}  // namespace lockstep::partition
