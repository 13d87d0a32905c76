// `lockstep run`: generate tokens in this one process: the fp32 reference forward pass, or,
// with --plan (a partitioner plan: its stages and TP degrees) or --stages/--tp (a uniform
// layout), every shard in turn with the collectives in memory (bit-identical to the reference).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/model/layout_from_plan.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/npy.h"
#include "lockstep/model/reference.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/model/sharded.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/tokenizer/chat_template.h"
#include "lockstep/tokenizer/tokenizer.h"
#include "run_distributed.h"
#include "run_inputs.h"
#include "token_list.h"

namespace lockstep::cli {
namespace {

// --text: the prompt through the model's tokenizer (with --chat through its chat template
// first), and the generated ids back to text on stdout as they come (whole characters only).
class TextIo {
 public:
  explicit TextIo(const std::string& path) : tokenizer_(Load(path)), stream_(tokenizer_) {}
  std::vector<int32_t> Encode(const std::string& text, bool chat, const std::string& system) const {
    try {
      if (!chat) return tokenizer_.Encode(text, /*add_special_tokens=*/true);
      std::vector<tokenizer::ChatMessage> messages;
      if (!system.empty()) messages.push_back({"system", system});
      messages.push_back({"user", text});
      const std::string prompt = tokenizer_.ApplyChatTemplate(
          tokenizer::ChatTemplate::MessagesJson(messages), /*add_generation_prompt=*/true);
      // The template writes BOS and its other special tokens itself.
      return tokenizer_.Encode(prompt, /*add_special_tokens=*/false);
    } catch (const Error& e) {
      throw Error(e.code(), std::string(chat ? "--chat: " : "--text: ") + e.what());
    }
  }
  // The tokenizer's EOS (tokenizer_config.json's eos_token), when it has one.
  std::optional<int32_t> eos() const { return tokenizer_.eos_id(); }
  void CheckVocabulary(const std::vector<int32_t>& ids, int64_t vocab_size) const {
    for (int32_t id : ids) {
      if (id >= vocab_size) {
        throw InvalidInput("--text: the tokenizer gives id " + std::to_string(id) +
                           ", outside the model's vocabulary of " + std::to_string(vocab_size) +
                           " (is --tokenizer the model's own?)");
      }
    }
  }
  void Stream(const std::vector<int32_t>& ids) {
    for (int32_t id : ids) std::cout << stream_.Push(id);
    std::cout.flush();
  }
  void Finish() { std::cout << stream_.Finish() << "\n"; }
  std::string Decode(const std::vector<int32_t>& ids) const {
    tokenizer::DecodeOptions o;
    o.clean_up_tokenization_spaces = false;
    return tokenizer_.Decode(ids, o);
  }

 private:
  static tokenizer::Tokenizer Load(const std::string& path) {
    if (path.empty() || !tokenizer::Tokenizer::Exists(path)) {
      throw UsageError(
          "--text needs a tokenizer: --tokenizer DIR|tokenizer.json, or a --model "
          "folder holding tokenizer.json" +
          (path.empty() ? std::string() : " (none at " + path + ")"));
    }
    return tokenizer::Tokenizer::Load(path);
  }
  tokenizer::Tokenizer tokenizer_;
  tokenizer::StreamDecoder stream_;
};

int Run(const std::vector<std::string>& args, Context& ctx) {
  if (WantsDistributed(args)) return RunDistributed(args, ctx);  // --transport: coordinator/
  po::options_description opts("options");
  std::string config, weights_path, prompt_text, dump, plan_path, text, tokenizer_path, system;
  uint64_t seed = 0, sample_seed = 0;
  int64_t max_new = 16, stages = 0, tp = 0;
  model::SamplingOptions sampling;
  opts.add_options()("model", po::value<std::string>(&config),
                     "config.json, or a folder holding one (required)")(
      "weights", po::value<std::string>(&weights_path),
      "safetensors checkpoint: a file, an index.json, or a folder")(
      "seed", po::value<uint64_t>(&seed), "use generated weights with this seed instead")(
      "prompt", po::value<std::string>(&prompt_text), "prompt token ids, e.g. 1,2,3")(
      "text", po::value<std::string>(&text),
      "prompt text instead of ids: encoded by the tokenizer (with its special tokens, e.g. BOS); "
      "the generated text is printed as it streams")(
      "tokenizer", po::value<std::string>(&tokenizer_path),
      "tokenizer.json or a folder holding one, for --text (default: the --model folder)")(
      "chat",
      "with --text: the text is the user's message, put through the tokenizer's chat template "
      "(tokenizer_config.json) with the assistant's turn opened, as transformers' "
      "apply_chat_template(add_generation_prompt=True) does")(
      "system", po::value<std::string>(&system), "with --chat: a system message before the user's")(
      "ignore-eos",
      "with --text: keep generating --max-new tokens past an end-of-sequence token (by default "
      "a --text run ends at the tokenizer's EOS or the model's eos_token_id of config.json or "
      "generation_config.json, and prints the text without it)")(
      "max-new", po::value<int64_t>(&max_new)->default_value(16), "tokens to generate")(
      "temperature", po::value<double>(&sampling.temperature)->default_value(0.0),
      "sampling temperature; 0 = greedy")("top-p",
                                          po::value<double>(&sampling.top_p)->default_value(1.0),
                                          "nucleus sampling mass in (0, 1]")(
      "sample-seed", po::value<uint64_t>(&sample_seed)->default_value(0),
      "seed of the sampling draws")(
      "plan", po::value<std::string>(&plan_path),
      "run sharded by a partitioner plan (lockstep plan ... -o P.plan): its stages and TP degrees")(
      "stages", po::value<int64_t>(&stages), "run sharded: pipeline stages (default 1)")(
      "tp", po::value<int64_t>(&tp), "run sharded: tensor-parallel degree per stage (default 1)")(
      "dump-logits", po::value<std::string>(&dump),
      "write the logits of every generated token to a float32 .npy [max_new, vocab]");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep run --model CONFIG (--weights FILE | --seed S) (--prompt 1,2,3 | --text T "
      "[--chat [--system S]] [--tokenizer DIR]) [--max-new N] [--ignore-eos] "
      "[--temperature T --top-p P --sample-seed S] [--plan PLAN | --stages S --tp T] "
      "[--dump-logits FILE.npy] "
      "[--json]\n\nIn this one process. With --transport sim|inproc|ipc|tcp the run is "
      "distributed: a "
      "coordinator and one worker per chip (see: lockstep run --transport ipc --help)";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return 0;
  if (config.empty() && plan_path.empty()) {
    throw UsageError("missing --model CONFIG (see: lockstep run --help)");
  }
  if (weights_path.empty() == !vm.count("seed")) {
    throw UsageError("give exactly one of --weights FILE or --seed S (see: lockstep run --help)");
  }
  if (prompt_text.empty() == text.empty()) {
    throw UsageError("give exactly one of --prompt 1,2,3 or --text \"...\"");
  }
  if ((vm.count("chat") || vm.count("system")) && text.empty()) {
    throw UsageError("--chat and --system go with --text (a chat template renders text)");
  }
  if (vm.count("system") && !vm.count("chat")) throw UsageError("--system goes with --chat");
  if (vm.count("ignore-eos") && text.empty()) {
    throw UsageError("--ignore-eos goes with --text (a --prompt run never ends early)");
  }
  if (!dump.empty()) CheckOutputFile(dump, "--dump-logits");
  if (max_new < 0) throw UsageError("--max-new must be >= 0, got " + std::to_string(max_new));
  if (!(sampling.temperature >= 0.0)) throw UsageError("--temperature must be >= 0");
  if (!(sampling.top_p > 0.0 && sampling.top_p <= 1.0)) {
    throw UsageError("--top-p must be in (0, 1]");
  }
  const bool uniform = vm.count("stages") || vm.count("tp");
  if (uniform && !plan_path.empty()) {
    throw UsageError("give either --plan PLAN or --stages/--tp, not both");
  }
  const bool sharded = uniform || !plan_path.empty();
  if (uniform) {
    stages = vm.count("stages") ? stages : 1;
    tp = vm.count("tp") ? tp : 1;
    if (stages < 1 || tp < 1) throw UsageError("--stages and --tp must be >= 1");
  }
  sampling.seed = sample_seed;
  std::optional<TextIo> text_io;
  if (!text.empty()) {
    // By default the model's own folder (--model may name the folder or its config.json).
    std::error_code ec;
    const std::string folder = std::filesystem::is_directory(config, ec)
                                   ? config
                                   : std::filesystem::path(config).parent_path().string();
    text_io.emplace(tokenizer_path.empty() ? folder : tokenizer_path);
  }
  const std::vector<int32_t> prompt = text_io ? text_io->Encode(text, vm.count("chat") > 0, system)
                                              : ParseTokenList(prompt_text, "--prompt");

  std::optional<partition::Plan> plan;
  if (!plan_path.empty()) plan = partition::ReadPlanFile(plan_path);
  // A plan carries its model: --model may be left out (LayoutFromPlan checks a given one).
  const partition::ModelSpec spec = config.empty() ? plan->spec : partition::LoadModelSpec(config);
  if (text_io) text_io->CheckVocabulary(prompt, spec.vocab_size);
  // --text runs end early at the tokenizer's EOS and the model's; --prompt runs generate
  // --max-new tokens, as the distributed run does.
  std::vector<int32_t> stop;
  if (text_io && !vm.count("ignore-eos")) {
    if (!config.empty()) stop = ModelEosIds(config);
    if (text_io->eos() && std::find(stop.begin(), stop.end(), *text_io->eos()) == stop.end()) {
      stop.push_back(*text_io->eos());
    }
  }
  std::optional<model::ModelLayout> layout;
  if (plan) {
    try {
      layout = model::LayoutFromPlan(*plan, spec);
    } catch (const Error& e) {
      throw Error(e.code(), plan_path + ": " + e.what());
    }
  } else if (uniform) {
    if (stages > spec.num_layers) {
      throw UsageError("--stages " + std::to_string(stages) + " exceeds the model's " +
                       std::to_string(spec.num_layers) + " layers");
    }
    layout = model::ModelLayout::Uniform(spec.num_layers, stages, tp);
  }
  model::LlamaWeights weights;
  if (!weights_path.empty()) {
    weights = model::LoadLlamaWeights(model::Checkpoint::Open(weights_path), spec);
  } else {
    weights = model::GenerateLlamaWeights(spec, seed);
  }
  const std::string weights_format(model::WeightFormatName(weights.format()));
  const auto start = std::chrono::steady_clock::now();
  model::Generation g;
  std::string mode = "reference";
  // Every forward call after the prompt's is one decode step: timed, as `run --transport`
  // times its decode steps (measured_token_latency_ns).
  int64_t calls = 0, decode_ns = 0;
  auto timed = [&](const model::ForwardStep& forward) -> model::ForwardStep {
    return [&, forward](const std::vector<int32_t>& tokens) {
      // A decode step is fed the token generated last: with --text, its text goes out now.
      if (calls > 0 && text_io && !ctx.json) text_io->Stream(tokens);
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<float> logits = forward(tokens);
      if (calls++ > 0) {
        decode_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::steady_clock::now() - t0)
                         .count();
      }
      return logits;
    };
  };
  if (sharded) {
    const model::ShardedModel model(spec, weights, *layout);
    mode = "sharded " + model.layout().ToString();
    model::ShardedKvCache cache = model.NewCache(static_cast<int64_t>(prompt.size()) + max_new + 1);
    g = model::GenerateWith(timed([&](const std::vector<int32_t>& tokens) {
                              std::vector<model::ShardedStep> step = {{&cache, tokens}};
                              return std::move(model.Forward(step)[0]);
                            }),
                            prompt, max_new, sampling, /*keep_logits=*/!dump.empty(), stop);
  } else {
    const model::ReferenceModel reference(spec, std::move(weights));
    model::KvCache cache = reference.NewCache(static_cast<int64_t>(prompt.size()) + max_new + 1);
    g = model::GenerateWith(timed([&](const std::vector<int32_t>& tokens) {
                              std::vector<model::SequenceStep> step = {{&cache, tokens}};
                              return std::move(reference.Forward(step)[0]);
                            }),
                            prompt, max_new, sampling, /*keep_logits=*/!dump.empty(), stop);
  }
  const int64_t decode_steps = std::max<int64_t>(calls - 1, 0);  // one sequence: a token each
  const int64_t token_latency = decode_steps > 0 ? decode_ns / decode_steps : 0;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ctx.log->info("{} prompt + {} generated tokens in {:.3f} s ({}, {}); decode {:.2f} ms/token",
                prompt.size(), g.tokens.size(), seconds, mode, weights_format, token_latency / 1e6);
  if (!dump.empty()) {
    std::vector<float> flat;
    for (const std::vector<float>& row : g.logits) flat.insert(flat.end(), row.begin(), row.end());
    model::WriteNpyFloat32(dump, static_cast<int64_t>(g.logits.size()), spec.vocab_size, flat);
  }
  if (ctx.json) {
    nlohmann::json j = {{"model", spec.name},
                        {"mode", mode},
                        {"weights_format", weights_format},
                        {"prompt", prompt},
                        {"tokens", g.tokens}};
    // Wall time of the whole generation (prefill included), as `run --transport` reports it.
    j["seconds"] = seconds;
    j["tokens_per_s"] = seconds > 0 ? static_cast<double>(g.tokens.size()) / seconds : 0.0;
    j["measured_token_latency_ns"] = token_latency;
    j["decode_steps"] = decode_steps;
    j["decode_tokens"] = decode_steps;  // as `run --transport` counts them
    j["decode_tokens_per_s"] = decode_ns > 0 ? decode_steps * 1e9 / decode_ns : 0.0;
    if (!dump.empty()) j["logits_file"] = dump;
    // OpenAI's names: "stop" at an end-of-sequence token, "length" at --max-new.
    j["finish_reason"] = g.stopped ? "stop" : "length";
    if (text_io) {
      // The text without the end-of-sequence token that ended it.
      j["text"] = text_io->Decode(
          {g.tokens.begin(), g.tokens.end() - static_cast<ptrdiff_t>(g.stopped ? 1 : 0)});
    }
    PrintJson(j);
  } else if (text_io) {
    // The last token is never fed back; an end-of-sequence token is not printed.
    if (!g.tokens.empty() && !g.stopped) text_io->Stream({g.tokens.back()});
    text_io->Finish();
  } else {
    for (size_t i = 0; i < g.tokens.size(); ++i) std::cout << (i ? " " : "") << g.tokens[i];
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

CommandGroup RunCommand() {
  return {"run",
          "generate tokens in this process (fp32 reference, or sharded by a plan or stages x TP)",
          Run};
}

}  // namespace lockstep::cli
