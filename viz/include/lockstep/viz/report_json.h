// The JSON reports `lockstep model show --json` and `lockstep simulate --json` print, built in one
// place (here, beside the pictures of the same plans and schedules) so the Python module (python/)
// returns exactly the same fields as the commands. Pure functions of their arguments.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "lockstep/common/dtype.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/schedule/compact.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/simulate.h"

namespace lockstep::viz {

// A model's description: parameters, weight and KV bytes at `dtype`, FLOPs per decoded token at
// `context`, its shape.
nlohmann::json ModelJson(const partition::ModelSpec& m, Dtype dtype, int64_t context);

// A simulation's measurements beside the plan's prediction and their bounds (`r.ok` must hold),
// the last token's critical path by category and the largest contributors to the gap to the
// bound (every category but compute and reduce steps, largest first).
nlohmann::json SimulateJson(const partition::Plan& plan, const schedule::CompactSchedule& schedule,
                            const schedule::SimResult& r);
nlohmann::json SimulateJson(const partition::Plan& plan, const schedule::GlobalSchedule& schedule,
                            const schedule::SimResult& r);
// The critical path's categories that the bound does not count (it is compute and reduce steps).
std::vector<schedule::GapShare> GapContributors(const schedule::SimResult& r);

}  // namespace lockstep::viz
