// `lockstep weights ...`: generate deterministic weights for a config, check a checkpoint
// against a config.
#include <iostream>

#include "command.h"
#include "lockstep/common/dtype.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::cli {
namespace {

Dtype ParseStorageDtype(const std::string& name) {
  std::optional<Dtype> d = ParseDtype(name);
  if (!d || (*d != Dtype::kFp32 && *d != Dtype::kFp16 && *d != Dtype::kBf16)) {
    throw UsageError("--dtype: '" + name + "' cannot be stored (valid: fp32, fp16, bf16)");
  }
  return *d;
}

int64_t Elements(const std::vector<model::TensorSpec>& specs) {
  int64_t n = 0;
  for (const model::TensorSpec& s : specs) n += s.num_elements();
  return n;
}

int WeightsGenerate(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string config, out, dtype_name;
  uint64_t seed = 0;
  int64_t shard_bytes = 0;
  opts.add_options()("model", po::value<std::string>(&config),
                     "config.json, or a folder holding one (required)")(
      "seed", po::value<uint64_t>(&seed), "generator seed (required)")(
      "dtype", po::value<std::string>(&dtype_name)->default_value("fp32"),
      "storage type: fp32, fp16, bf16")(
      "shard-bytes", po::value<int64_t>(&shard_bytes),
      "write a sharded checkpoint into the folder -o names instead of one file: "
      "model-0000k-of-0000n.safetensors of at most this many bytes of tensors each, and "
      "model.safetensors.index.json (as Hugging Face publishes large models)")(
      "output,o", po::value<std::string>(&out),
      "the .safetensors file to write, or the folder with --shard-bytes (required)");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep weights generate --model CONFIG --seed S [--dtype fp32|fp16|bf16] -o "
      "FILE.safetensors [--json]\n"
      "lockstep weights generate --model CONFIG --seed S [--dtype D] --shard-bytes N -o FOLDER "
      "[--json]";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return 0;
  if (config.empty())
    throw UsageError("missing --model CONFIG (see: lockstep weights generate --help)");
  if (!vm.count("seed"))
    throw UsageError("missing --seed S (see: lockstep weights generate --help)");
  if (out.empty())
    throw UsageError("missing -o FILE.safetensors (see: lockstep weights generate --help)");
  if (vm.count("shard-bytes") && shard_bytes < 1) {
    throw UsageError("--shard-bytes must be >= 1, got " + std::to_string(shard_bytes));
  }
  const Dtype dtype = ParseStorageDtype(dtype_name);
  const partition::ModelSpec spec = partition::LoadModelSpec(config);
  const std::vector<model::TensorSpec> specs = model::LlamaTensorSpecs(spec, dtype);
  ctx.log->info("generating {} tensors for {} at {} (seed {})", specs.size(), spec.name,
                DtypeName(dtype), seed);
  model::WriteGeneratedWeights(spec, seed, dtype, out, shard_bytes);
  const int64_t params = Elements(specs);
  // Bytes on disk: the file, or every file of the sharded folder.
  uint64_t bytes = 0, files = 0;
  if (shard_bytes > 0) {
    for (const auto& e : std::filesystem::directory_iterator(out)) {
      if (e.path().extension() == ".safetensors") {
        bytes += e.file_size();
        ++files;
      }
    }
  } else {
    bytes = std::filesystem::file_size(out);
    files = 1;
  }
  if (ctx.json) {
    PrintJson({{"path", out},
               {"model", spec.name},
               {"seed", seed},
               {"dtype", std::string(DtypeName(dtype))},
               {"tensors", specs.size()},
               {"parameters", params},
               {"files", files},
               {"bytes", bytes}});
  } else {
    std::cout << "wrote " << out << ": " << specs.size() << " tensors, " << params
              << " parameters at " << DtypeName(dtype) << ", " << bytes << " bytes"
              << (files > 1 ? " in " + std::to_string(files) + " files" : "") << " (model "
              << spec.name << ", seed " << seed << ")\n";
  }
  return 0;
}

int WeightsCheck(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string config, weights;
  opts.add_options()("model", po::value<std::string>(&config),
                     "config.json, or a folder holding one (required)")(
      "weights", po::value<std::string>(&weights),
      "a .safetensors file, a *.safetensors.index.json, or a folder holding either (required)");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!ParseOrHelp(args, "lockstep weights check --model CONFIG --weights PATH [--json]", opts, pos,
                   vm)) {
    return 0;
  }
  if (config.empty())
    throw UsageError("missing --model CONFIG (see: lockstep weights check --help)");
  if (weights.empty())
    throw UsageError("missing --weights PATH (see: lockstep weights check --help)");
  const partition::ModelSpec spec = partition::LoadModelSpec(config);
  const model::Checkpoint checkpoint = model::Checkpoint::Open(weights);
  model::CheckLlamaWeights(checkpoint, spec);
  const std::vector<model::TensorSpec> specs = model::LlamaTensorSpecs(spec, Dtype::kFp32);
  const Dtype dtype = checkpoint.Get(specs.front().name).dtype;
  ctx.log->debug("{}: {} tensors in the checkpoint", weights, checkpoint.names().size());
  if (ctx.json) {
    PrintJson({{"ok", true},
               {"model", spec.name},
               {"weights", weights},
               {"dtype", std::string(DtypeName(dtype))},
               {"tensors", specs.size()},
               {"parameters", Elements(specs)}});
  } else {
    std::cout << weights << ": matches " << spec.name << " (" << specs.size() << " tensors, "
              << Elements(specs) << " parameters at " << DtypeName(dtype) << ")\n";
  }
  return 0;
}

}  // namespace

CommandGroup WeightsCommand() {
  return {"weights", "generate deterministic weights; check a checkpoint against a config",
          [](const std::vector<std::string>& args, Context& ctx) {
            std::vector<Subcommand> subs = {
                {"generate", "write seeded weights for any config to a .safetensors file",
                 WeightsGenerate},
                {"check", "check that a safetensors checkpoint matches a config", WeightsCheck}};
            return DispatchSubcommand(
                "weights", "Generate deterministic weights; check a checkpoint against a config.",
                subs, args, ctx);
          }};
}

}  // namespace lockstep::cli
