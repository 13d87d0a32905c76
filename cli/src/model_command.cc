// `lockstep model ...`: read and describe Hugging Face model configs.
#include <iostream>
#include <sstream>

#include "command.h"
#include "lockstep/common/dtype.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/viz/report_json.h"

namespace lockstep::cli {
namespace {

// 6738415616 -> "6,738,415,616".
std::string Grouped(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

// Bytes with a binary unit, two decimals ("128.35 GiB").
std::string Bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(u == 0 ? 0 : 2);
  s << v << " " << units[u];
  return s.str();
}

int ModelShow(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string config;
  std::string dtype_name;
  int64_t context = 0;
  opts.add_options()("config", po::value<std::string>(&config),
                     "config.json, or a folder holding one")(
      "dtype", po::value<std::string>(&dtype_name),
      "weight/KV element type: fp32, fp16, bf16, int8, fp8 (default: the config's torch_dtype, "
      "else fp16)")("context", po::value<int64_t>(&context)->default_value(0),
                    "tokens already in the KV cache when counting FLOPs per decoded token");
  po::positional_options_description pos;
  pos.add("config", 1);
  po::variables_map vm;
  if (!ParseOrHelp(args, "lockstep model show CONFIG [--dtype D] [--context C] [--json]", opts, pos,
                   vm)) {
    return 0;
  }
  if (config.empty()) {
    throw UsageError(
        "missing CONFIG: a config.json or a folder holding one (see: lockstep model "
        "show --help)");
  }
  if (context < 0) throw UsageError("--context must be >= 0, got " + std::to_string(context));

  const partition::ModelSpec m = partition::LoadModelSpec(config);
  Dtype dtype = m.torch_dtype.value_or(Dtype::kFp16);
  if (!dtype_name.empty()) {
    std::optional<Dtype> d = ParseDtype(dtype_name);
    if (!d) {
      throw UsageError("--dtype: unknown type '" + dtype_name +
                       "' (valid: fp32, fp16, bf16, int8, fp8)");
    }
    dtype = *d;
  }
  const partition::ParameterCounts c = partition::CountParameters(m);
  const int64_t weight_bytes = partition::WeightBytes(m, dtype);
  const int64_t kv_bytes = partition::KvCacheBytesPerToken(m, dtype);
  const int64_t flops = partition::DecodeFlopsPerToken(m, context);
  ctx.log->debug("model {}: {} parameters", m.name, c.total);

  if (ctx.json) {
    PrintJson(viz::ModelJson(m, dtype, context));
    return 0;
  }

  std::cout << m.name << " (" << m.model_type << ")\n"
            << "  shape          " << m.num_layers << " layers, hidden " << m.hidden_size
            << ", intermediate " << m.intermediate_size << ", " << m.num_heads << " heads / "
            << m.num_kv_heads << " KV heads x " << m.head_dim << ", vocab " << m.vocab_size;
  if (m.is_moe()) std::cout << ", " << m.experts_per_token << " of " << m.num_experts << " experts";
  if (m.tie_word_embeddings) std::cout << ", tied embeddings";
  std::cout << "\n"
            << "  parameters     " << Grouped(c.total);
  if (m.is_moe()) std::cout << " (" << Grouped(c.active_total) << " active per token)";
  std::cout << "\n"
            << "    per layer    " << Grouped(c.per_layer) << " (attention "
            << Grouped(c.attention_per_layer) << ", mlp " << Grouped(c.mlp_per_layer) << ", norms "
            << Grouped(c.norms_per_layer) << ")\n"
            << "    embedding    " << Grouped(c.embedding) << "\n"
            << "    lm head      "
            << (m.tie_word_embeddings ? std::string("tied to the embedding") : Grouped(c.lm_head))
            << "\n"
            << "  weights        " << Bytes(weight_bytes) << " at " << DtypeName(dtype) << " ("
            << Grouped(weight_bytes) << " bytes)\n"
            << "  KV cache       " << Bytes(kv_bytes) << " per token (" << Grouped(kv_bytes)
            << " bytes)\n"
            << "  FLOPs/token    " << Grouped(flops) << " per decoded token at context " << context
            << "\n";
  return 0;
}

}  // namespace

CommandGroup ModelCommand() {
  return {"model", "read and describe Hugging Face model configs",
          [](const std::vector<std::string>& args, Context& ctx) {
            std::vector<Subcommand> subs = {
                {"show",
                 "parameters, weight bytes, KV cache per token and FLOPs per token of a "
                 "config.json",
                 ModelShow}};
            return DispatchSubcommand("model", "Read and describe Hugging Face model configs.",
                                      subs, args, ctx);
          }};
}

}  // namespace lockstep::cli
