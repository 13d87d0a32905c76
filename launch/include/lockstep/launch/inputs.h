// The inputs of a run as its front ends name them (`lockstep run --transport`, `lockstep deploy`,
// `lockstep-coordinator`): a model spec, weights, a topology by name or file, a plan (read or made
// now), prompts typed as token ids. Loaded and checked once, the same way for every front end,
// before anything starts. Pure apart from reading the named files; thread-safe.
//
// A plan file carries its ModelSpec and topology: with a plan, the model and the topology may be
// left out (they default to the plan's); when given they must describe the plan's model
// (the deployment refuses a plan for another topology, naming both).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/shard_loader.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/topology.h"

namespace lockstep::launch {

// Parts of a run's configuration that contradict each other or are spelled wrong (both weights
// and a seed, --tp with a plan file, "racks:x"): the command line is wrong, not the files. Front
// ends report it as a usage error (exit status 2).
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error(ErrorCode::kInvalidInput, message) {}
};

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
  // Where the weights are: a checkpoint (absolute path; checked against `spec` from its headers,
  // never loaded here) or the seed. Each worker on this host reads only its own slices from it
  // (model::ShardSource); a shard for a worker elsewhere is cut here, one at a time.
  model::ShardSource weights;
  topology::Topology topo;
  partition::Plan plan;
  // Or the weights themselves, already in this process (tests, embedders): every shard is cut
  // from them and shipped; `weights` is then ignored.
  std::optional<model::LlamaWeights> in_memory;
};

// ConfigError for a missing model without a plan, both or neither of weights and seed, or
// tp/pp/cost_params with a plan; lockstep::Error naming the file for anything unreadable or
// inconsistent. `cost_params` (--cost-params FILE, planning only): the figures the plan is made
// and predicted with (partition/cost_params.h), read against the topology's first working chip.
RunInputs LoadRunInputs(const RunInputArgs& args, const std::string& cost_params = "");

// Every prompt plus `max_new` must fit the model's positions; InvalidInput naming the longest.
void CheckPromptsFit(const partition::ModelSpec& spec,
                     const std::vector<std::vector<int32_t>>& prompts, int64_t max_new);

// Prompts as users type them: comma-separated token ids ("1,2,3"). ConfigError naming `where`
// (e.g. "--prompt", "FILE:3") and the bad item for anything but integers in [0, 2^31) separated
// by commas, or for an empty list.
std::vector<int32_t> ParseTokenList(const std::string& text, const std::string& where);

// Every prompt of a prompts file, one list per line ('#' starts a comment line, blank lines are
// skipped). Error (kNotFound) when it cannot be opened, kInvalidInput when it holds no prompt,
// ConfigError naming FILE:LINE for a bad line.
std::vector<std::vector<int32_t>> ReadPromptsFile(const std::string& path);

// The model's own end-of-sequence ids: eos_token_id (a number or a list) of config.json and of
// generation_config.json beside it (Llama 3 Instruct ends turns with <|eot_id|> there).
// `config`: the --model argument (a folder or its config.json). InvalidInput naming the file for
// an eos_token_id that is not a token id or a list of them.
std::vector<int32_t> ModelEosIds(const std::string& config);

}  // namespace lockstep::launch
