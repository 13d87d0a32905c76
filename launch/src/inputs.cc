#include "lockstep/launch/inputs.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lockstep/model/llama_weights.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/partition/cost_params.h"
#include "lockstep/topology/named.h"

namespace lockstep::launch {

RunInputs LoadRunInputs(const RunInputArgs& args, const std::string& cost_params) {
  if (args.model.empty() && args.plan.empty()) {
    throw ConfigError("missing --model CONFIG (or a --plan that carries its model)");
  }
  if (args.weights.empty() == !args.seed.has_value()) {
    throw ConfigError("give exactly one of --weights FILE or --seed S");
  }
  if (!args.plan.empty() && (args.tp > 0 || args.pp > 0)) {
    throw ConfigError("--tp/--pp plan a layout; they cannot change a --plan file");
  }
  if (!args.plan.empty() && !cost_params.empty()) {
    throw ConfigError(
        "--cost-params prices a new plan; a --plan file carries the figures it was made with "
        "(plan it with lockstep plan --cost-params)");
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
  if (args.weights.empty()) {
    in.weights.seed = *args.seed;
  } else {
    in.weights.checkpoint = std::filesystem::absolute(args.weights).string();
    model::CheckLlamaWeights(model::Checkpoint::Open(in.weights.checkpoint), in.spec);
  }
  if (args.topology.empty() && !args.plan.empty()) {
    in.topo = partition::PlanTopology(in.plan);
  } else {
    try {
      in.topo = topology::NamedTopology(args.topology.empty() ? "node" : args.topology,
                                        *topology::ChipPreset("lpu-v1"), args.spare_nodes);
    } catch (const topology::NameError& e) {
      throw ConfigError(e.what());
    }
  }
  if (args.plan.empty()) {
    partition::PlanOptions options;
    if (args.tp > 0) options.tp = args.tp;
    if (args.pp > 0) options.pp = args.pp;
    if (!cost_params.empty()) {
      const topology::Chip* first = nullptr;
      for (const topology::Chip& c : in.topo.chips()) {
        if (!c.spare && !c.down) {
          first = &c;
          break;
        }
      }
      if (first == nullptr) throw InvalidInput(in.topo.name() + ": no working chip to plan on");
      const partition::CostParams p =
          partition::LoadCostParams(cost_params, in.topo.spec_of(first->id));
      options.chip_params = p.chip;
      options.link_params = p.link;
      options.runtime_params = p.runtime;
      options.cost_params_name = p.name;
    }
    in.plan = partition::MakePlan(in.spec, in.topo, options);
  }
  return in;
}

void CheckPromptsFit(const partition::ModelSpec& spec,
                     const std::vector<std::vector<int32_t>>& prompts, int64_t max_new) {
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, p.size());
  if (spec.max_position_embeddings > 0 && longest + max_new > spec.max_position_embeddings) {
    throw InvalidInput("a prompt of " + std::to_string(longest) + " tokens + --max-new " +
                       std::to_string(max_new) + " exceeds the model's " +
                       std::to_string(spec.max_position_embeddings) + " positions");
  }
}

std::vector<int32_t> ParseTokenList(const std::string& text, const std::string& where) {
  std::vector<int32_t> tokens;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX) {
      throw ConfigError(where + ": '" + item +
                        "' is not a token id (want comma-separated integers >= 0, e.g. 1,2,3)");
    }
    tokens.push_back(static_cast<int32_t>(v));
  }
  if (tokens.empty()) throw ConfigError(where + ": needs at least one token id, e.g. 1,2,3");
  return tokens;
}

std::vector<std::vector<int32_t>> ReadPromptsFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, "--prompts " + path + ": cannot open the file");
  std::vector<std::vector<int32_t>> prompts;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    prompts.push_back(ParseTokenList(line, path + ":" + std::to_string(number)));
  }
  if (prompts.empty()) throw InvalidInput("--prompts " + path + ": no prompt lines");
  return prompts;
}

std::vector<int32_t> ModelEosIds(const std::string& config) {
  std::error_code ec;
  const std::filesystem::path folder = std::filesystem::is_directory(config, ec)
                                           ? std::filesystem::path(config)
                                           : std::filesystem::path(config).parent_path();
  const std::filesystem::path config_file = std::filesystem::is_directory(config, ec)
                                                ? folder / "config.json"
                                                : std::filesystem::path(config);
  std::vector<int32_t> ids;
  for (const std::filesystem::path& file : {config_file, folder / "generation_config.json"}) {
    std::ifstream in(file);
    if (!in) continue;
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("eos_token_id")) continue;
    const nlohmann::json& e = j["eos_token_id"];
    for (const nlohmann::json& id : e.is_array() ? e : nlohmann::json::array({e})) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        throw InvalidInput(file.string() + ": eos_token_id must be a token id or a list of them");
      }
      if (std::find(ids.begin(), ids.end(), id.get<int32_t>()) == ids.end()) {
        ids.push_back(id.get<int32_t>());
      }
    }
  }
  return ids;
}

}  // namespace lockstep::launch
