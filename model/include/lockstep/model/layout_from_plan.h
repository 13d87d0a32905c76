// A partitioner Plan as a ModelLayout: what the in-process sharded run (ShardedModel) needs of
// a plan — each stage's decoder layers and tensor-parallel degree.
//
// A plan stage may hold the embedding or the LM head alone (no decoder layers); ModelLayout
// keeps such a stage's degree as embed_tp / head_tp, so the vocab-parallel split of the run is
// the plan's. (The chips a stage is placed on do not change the numbers; ShardedModel runs
// every shard in this process.) Pure functions; thread-safe.
#pragma once

#include "lockstep/model/sharded.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"

namespace lockstep::model {

// Throws Error (kInvalidInput) when the plan was made for another model (its model name or
// layer count differs from `spec`'s: the message names both), when its stages do not cover the
// embedding, every layer and the head in order, or as ValidateLayout when a stage's degree
// cannot run `spec`.
ModelLayout LayoutFromPlan(const partition::Plan& plan, const partition::ModelSpec& spec);

}  // namespace lockstep::model
