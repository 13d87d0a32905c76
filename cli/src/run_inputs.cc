#include "run_inputs.h"

#include <unistd.h>

#include <filesystem>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/topology/chip_spec.h"
#include "topology_arg.h"

namespace lockstep::cli {

void CheckOutputFile(const std::string& path, const std::string& flag) {
  const std::filesystem::path p(path);
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw UsageError(flag + " " + path + ": folder " + dir.string() +
                     " does not exist (create it, or write the file elsewhere)");
  }
  if (std::filesystem::is_directory(p, ec)) {
    throw UsageError(flag + " " + path + ": is a folder, not a file name");
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    throw UsageError(flag + " " + path + ": folder " + dir.string() + " is not writable");
  }
}

RunInputs LoadRunInputs(const RunInputArgs& args) {
  if (args.model.empty() && args.plan.empty()) {
    throw UsageError("missing --model CONFIG (or a --plan that carries its model)");
  }
  if (args.weights.empty() == !args.seed.has_value()) {
    throw UsageError("give exactly one of --weights FILE or --seed S");
  }
  if (!args.plan.empty() && (args.tp > 0 || args.pp > 0)) {
    throw UsageError("--tp/--pp plan a layout; they cannot change a --plan file");
  }
  RunInputs in;
  if (!args.plan.empty()) in.plan = partition::ReadPlanFile(args.plan);
  if (!args.model.empty()) {
    in.spec = partition::LoadModelSpec(args.model);
    if (!args.plan.empty()) {
      if (const std::string d = partition::ModelSpecDifference(in.plan.spec, in.spec); !d.empty()) {
        throw InvalidInput(args.plan + ": the plan is for model '" + in.plan.spec.name + "', not " +
                           args.model + " (" + d + ")");
      }
    }
  } else {
    in.spec = in.plan.spec;
  }
  in.weights = args.weights.empty()
                   ? model::GenerateLlamaWeights(in.spec, *args.seed)
                   : model::LoadLlamaWeights(model::Checkpoint::Open(args.weights), in.spec);
  if (args.topology.empty() && !args.plan.empty()) {
    in.topo = partition::PlanTopology(in.plan);
  } else {
    in.topo = ResolveTopology(args.topology.empty() ? "node" : args.topology,
                              *topology::ChipPreset("lpu-v1"), args.spare_nodes);
  }
  if (args.plan.empty()) {
    partition::PlanOptions options;
    if (args.tp > 0) options.tp = args.tp;
    if (args.pp > 0) options.pp = args.pp;
    in.plan = partition::MakePlan(in.spec, in.topo, options);
  }
  return in;
}

}  // namespace lockstep::cli
