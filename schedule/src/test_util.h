// Small models, topologies and plans for the schedule tests.
#pragma once

#include <utility>
#include <vector>

#include "lockstep/partition/plan.h"
#include "lockstep/topology/generators.h"

namespace lockstep::schedule::testing {

// A Llama-style decoder small enough to compile in microseconds, shardable up to TP 16.
inline partition::ModelSpec SmallModel(int64_t layers = 6) {
  partition::ModelSpec m;
  m.name = "small";
  m.model_type = "llama";
  m.hidden_size = 1024;
  m.intermediate_size = 2048;
  m.num_layers = layers;
  m.num_heads = 16;
  m.num_kv_heads = 4;
  m.head_dim = 64;
  m.vocab_size = 1024;
  m.max_position_embeddings = 4096;
  return m;
}

// A plan with an explicit layout: (units, tp) per stage.
inline partition::Plan LayoutPlan(const partition::ModelSpec& spec, const topology::Topology& topo,
                                  std::vector<std::pair<int64_t, int>> layout, int64_t batch = 1) {
  partition::PlanOptions o;
  o.layout = std::move(layout);
  o.workload.batch = batch;
  o.workload.context = 512;
  return partition::MakePlan(spec, topo, o);
}

}  // namespace lockstep::schedule::testing
