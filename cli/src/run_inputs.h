// The inputs of a distributed run — model spec, weights, topology and plan — loaded and checked
// once, the same way for `lockstep run --transport` and `lockstep-coordinator`, before anything
// starts. A plan file carries its ModelSpec and topology: with --plan, --model and --topology
// may be left out (they default to the plan's); when given they must describe the plan's model
// (MakeDeployment refuses a plan for another topology, naming both).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lockstep/model/llama_weights.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/topology.h"

namespace lockstep::cli {

struct RunInputArgs {
  std::string model;    // --model CONFIG (or its folder); empty: the plan's spec
  std::string weights;  // --weights FILE; empty: generated from `seed`
  std::optional<uint64_t> seed;
  std::string topology;  // --topology; empty: the plan's, or "node" without a plan
  int spare_nodes = 1;
  std::string plan;    // --plan FILE; empty: plan now
  int tp = 0, pp = 0;  // planning only
};

struct RunInputs {
  partition::ModelSpec spec;
  model::LlamaWeights weights;
  topology::Topology topo;
  partition::Plan plan;
};

// An output file the run writes at its end (`flag` names the option, e.g. --dump-logits): its
// folder must exist and be writable, checked before anything starts so a long run's results are
// not lost to a typo. Throws UsageError naming the flag, the path and what is wrong.
void CheckOutputFile(const std::string& path, const std::string& flag);

// Throws UsageError for a missing --model without --plan, or both/neither of weights and seed;
// lockstep::Error naming the file for anything unreadable or inconsistent.
RunInputs LoadRunInputs(const RunInputArgs& args);

}  // namespace lockstep::cli
