#include "lockstep/model/layout_from_plan.h"

#include <algorithm>
#include <string>

#include "lockstep/common/error.h"

namespace lockstep::model {

ModelLayout LayoutFromPlan(const partition::Plan& plan, const partition::ModelSpec& spec) {
  // A plan's units: 0 = embedding, 1..L = layers, L + 1 = the LM head.
  const int64_t plan_layers = plan.stages.empty() ? 0 : plan.stages.back().end_unit - 2;
  if (plan.model != spec.name || plan_layers != spec.num_layers) {
    throw InvalidInput("the plan is for model '" + plan.model + "' with " +
                       std::to_string(plan_layers) + " layers, but the model given is '" +
                       spec.name + "' with " + std::to_string(spec.num_layers) +
                       " layers; plan this model (lockstep plan --model ...) or give the plan's");
  }
  ModelLayout layout;
  int64_t next_unit = 0;
  for (const partition::StagePlan& st : plan.stages) {
    const std::string where = "plan stage " + std::to_string(st.index);
    if (st.first_unit != next_unit || st.end_unit <= st.first_unit ||
        st.first_layer != std::max<int64_t>(0, st.first_unit - 1) ||
        st.end_layer != std::min<int64_t>(spec.num_layers, st.end_unit - 1) ||
        st.has_embedding != (st.first_unit == 0) ||
        st.has_head != (st.end_unit == spec.num_layers + 2)) {
      throw InvalidInput(where + " (units [" + std::to_string(st.first_unit) + "," +
                         std::to_string(st.end_unit) + "), layers [" +
                         std::to_string(st.first_layer) + "," + std::to_string(st.end_layer) +
                         ")) does not continue the stages before it at unit " +
                         std::to_string(next_unit) + " with consistent layer bounds");
    }
    next_unit = st.end_unit;
    if (st.tp < 1) throw InvalidInput(where + ": tensor-parallel degree must be >= 1");
    if (st.has_embedding) layout.embed_tp = st.tp;
    if (st.has_head) layout.head_tp = st.tp;
    if (st.end_layer > st.first_layer)
      layout.stages.push_back({st.first_layer, st.end_layer, st.tp});
  }
  if (layout.stages.empty()) throw InvalidInput("the plan has no stage with decoder layers");
  // The embedding / head keep their own degree only when it differs from their neighbour's:
  // the same layout then prints and compares as a plain one.
  if (layout.embed_tp == layout.stages.front().tp) layout.embed_tp = 0;
  if (layout.head_tp == layout.stages.back().tp) layout.head_tp = 0;
  ValidateLayout(spec, layout);
  return layout;
}

}  // namespace lockstep::model
