// `lockstep weights ...`: generate deterministic weights for a config, check a checkpoint
// against a config, quantize a checkpoint to int8, compare two checkpoints of one model.
#include <filesystem>
#include <iostream>

#include "command.h"
#include "lockstep/common/dtype.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/quantize.h"
#include "lockstep/model/reference.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/partition/model_spec.h"
#include "token_list.h"

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
  const model::WeightFormat format = model::CheckLlamaWeights(checkpoint, spec);
  const std::vector<model::TensorSpec> specs = model::LlamaTensorSpecs(spec, Dtype::kFp32);
  const Dtype dtype = checkpoint.Get(specs.front().name).dtype;
  // What the projections are stored as: fp32/fp16/bf16, or the int8 scheme.
  const std::string stored = model::IsInt8(format) ? std::string(model::WeightFormatName(format))
                                                   : std::string(DtypeName(dtype));
  ctx.log->debug("{}: {} tensors in the checkpoint", weights, checkpoint.names().size());
  if (ctx.json) {
    PrintJson({{"ok", true},
               {"model", spec.name},
               {"weights", weights},
               {"dtype", stored},
               {"tensors", specs.size()},
               {"parameters", Elements(specs)}});
  } else {
    std::cout << weights << ": matches " << spec.name << " (" << specs.size() << " tensors, "
              << Elements(specs) << " parameters at " << stored << ")\n";
  }
  return 0;
}

int WeightsQuantize(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string config, weights, scheme, out;
  opts.add_options()("model", po::value<std::string>(&config),
                     "config.json, or a folder holding one (required)")(
      "weights", po::value<std::string>(&weights),
      "the fp32/fp16/bf16 checkpoint: a .safetensors file, a *.safetensors.index.json, or a "
      "folder holding either (required)")(
      "scheme", po::value<std::string>(&scheme),
      "int8-block32 (a scale per 32 input columns of a row) or int8-channel (a scale per output "
      "row) (required)")("output,o", po::value<std::string>(&out),
                         "the int8 .safetensors file to write (required)");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep weights quantize --model CONFIG --weights IN --scheme int8-block32|int8-channel "
      "-o OUT.safetensors [--json]\n\n"
      "Writes symmetric int8 weights: every 2-D weight (embedding, q/k/v/o, gate/up/down, "
      "lm_head) as I8 q = round(w / scale), ties away from zero, in [-127, 127], with its F32 "
      "scales in '<name>_scale' (amax / 127 per block of 32 columns, or per row); norms and "
      "biases stay F32. One tensor is held in memory at a time. `lockstep run --weights OUT` "
      "runs it with integer block dot products (README: int8 weights).";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return 0;
  for (const auto& [value, flag] : {std::pair{&config, "--model CONFIG"},
                                    {&weights, "--weights IN"},
                                    {&scheme, "--scheme int8-block32|int8-channel"},
                                    {&out, "-o OUT.safetensors"}}) {
    if (value->empty()) {
      throw UsageError(std::string("missing ") + flag + " (see: lockstep weights quantize --help)");
    }
  }
  const std::optional<model::WeightFormat> format = model::ParseWeightFormat(scheme);
  if (!format || !model::IsInt8(*format)) {
    throw UsageError("--scheme: '" + scheme +
                     "' is not an int8 scheme (valid: int8-block32, "
                     "int8-channel)");
  }
  const partition::ModelSpec spec = partition::LoadModelSpec(config);
  const model::Checkpoint in = model::Checkpoint::Open(weights);
  ctx.log->info("quantizing {} to {}", weights, scheme);
  model::QuantizeCheckpoint(in, spec, *format, out);
  const std::vector<model::TensorSpec> specs = model::QuantizedTensorSpecs(spec, *format);
  const uint64_t bytes = std::filesystem::file_size(out);
  if (ctx.json) {
    PrintJson({{"path", out},
               {"model", spec.name},
               {"scheme", scheme},
               {"tensors", specs.size()},
               {"bytes", bytes}});
  } else {
    std::cout << "wrote " << out << ": " << specs.size() << " tensors, " << bytes << " bytes ("
              << scheme << ", model " << spec.name << ")\n";
  }
  return 0;
}

int WeightsCompare(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string config, weights, against, prompt_text = "1,2,3,4,5,6,7,8";
  int64_t tokens = 256;
  opts.add_options()("model", po::value<std::string>(&config),
                     "config.json, or a folder holding one (required)")(
      "weights", po::value<std::string>(&weights),
      "the checkpoint to judge, e.g. an int8 one (required)")(
      "against", po::value<std::string>(&against),
      "the baseline checkpoint of the same model, e.g. the fp32 one it came from (required)")(
      "prompt", po::value<std::string>(&prompt_text)->default_value(prompt_text),
      "token ids to start from, comma-separated")(
      "tokens", po::value<int64_t>(&tokens)->default_value(tokens),
      "tokens the baseline generates greedily; both models read the same sequence");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep weights compare --model CONFIG --weights CANDIDATE --against BASELINE "
      "[--prompt 1,2,3] [--tokens 256] [--json]\n\n"
      "How far CANDIDATE's logits are from BASELINE's on the same tokens: BASELINE generates "
      "--tokens tokens greedily after the prompt, CANDIDATE reads the same sequence; prints the "
      "largest and mean |logit difference| and how often the two agree on the most likely token.";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return 0;
  for (const auto& [value, flag] : {std::pair{&config, "--model CONFIG"},
                                    {&weights, "--weights CANDIDATE"},
                                    {&against, "--against BASELINE"}}) {
    if (value->empty()) {
      throw UsageError(std::string("missing ") + flag + " (see: lockstep weights compare --help)");
    }
  }
  if (tokens < 1) throw UsageError("--tokens must be >= 1, got " + std::to_string(tokens));
  const std::vector<int32_t> prompt = ParseTokenList(prompt_text, "--prompt");
  const partition::ModelSpec spec = partition::LoadModelSpec(config);
  const model::ReferenceModel candidate(
      spec, model::LoadLlamaWeights(model::Checkpoint::Open(weights), spec));
  const model::ReferenceModel baseline(
      spec, model::LoadLlamaWeights(model::Checkpoint::Open(against), spec));
  ctx.log->info("comparing {} ({}) against {} ({}) over {} tokens", weights,
                model::WeightFormatName(candidate.weights().format()), against,
                model::WeightFormatName(baseline.weights().format()), tokens);
  const model::WeightsComparison c = model::CompareWeights(baseline, candidate, prompt, tokens);
  const double agreement =
      static_cast<double>(c.top1_agreements) / static_cast<double>(c.positions);
  if (ctx.json) {
    PrintJson({{"model", spec.name},
               {"weights", weights},
               {"against", against},
               {"positions", c.positions},
               {"max_abs_logit_diff", c.max_abs_logit_diff},
               {"mean_abs_logit_diff", c.mean_abs_logit_diff},
               {"top1_agreements", c.top1_agreements},
               {"top1_agreement", agreement}});
  } else {
    std::cout << weights << " against " << against << " over " << c.positions
              << " tokens: max |delta logit| " << c.max_abs_logit_diff << ", mean "
              << c.mean_abs_logit_diff << ", top-1 agreement " << c.top1_agreements << "/"
              << c.positions << "\n";
  }
  return 0;
}

}  // namespace

CommandGroup WeightsCommand() {
  return {
      "weights", "generate deterministic weights; check, quantize (int8) and compare checkpoints",
      [](const std::vector<std::string>& args, Context& ctx) {
        std::vector<Subcommand> subs = {
            {"generate", "write seeded weights for any config to a .safetensors file",
             WeightsGenerate},
            {"check", "check that a safetensors checkpoint matches a config", WeightsCheck},
            {"quantize", "write an int8 checkpoint (per block of 32 or per channel)",
             WeightsQuantize},
            {"compare", "max/mean |delta logit| and top-1 agreement of two checkpoints",
             WeightsCompare}};
        return DispatchSubcommand(
            "weights", "Generate deterministic weights; check, quantize and compare checkpoints.",
            subs, args, ctx);
      }};
}

}  // namespace lockstep::cli
