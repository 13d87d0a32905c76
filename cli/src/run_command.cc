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
#include "lockstep/launch/inputs.h"
#include "lockstep/model/layout_from_plan.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/npy.h"
#include "lockstep/model/reference.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/model/sharded.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/tokenizer/tokenizer.h"
#include "run_distributed.h"
#include "run_inputs.h"
#include "text_io.h"
#include "token_list.h"

namespace lockstep::cli {
namespace {

// The command line of `run` in this process, checked (ParseRunFlags).
struct RunFlags {
  std::string config, weights_path, prompt_text, dump, plan_path;
  TextFlags text;  // --text and its companions
  uint64_t seed = 0, sample_seed = 0;
  int64_t max_new = 16, stages = 0, tp = 0;
  model::SamplingOptions sampling;
  bool uniform = false;  // --stages/--tp: a uniform layout (stages and tp then set, >= 1)

  bool sharded() const { return uniform || !plan_path.empty(); }
};

// Parses and checks `args`; nullopt when --help was printed.
std::optional<RunFlags> ParseRunFlags(const std::vector<std::string>& args) {
  RunFlags f;
  po::options_description opts("options");
  opts.add_options()("model", po::value<std::string>(&f.config),
                     "config.json, or a folder holding one (required)")(
      "weights", po::value<std::string>(&f.weights_path),
      "safetensors checkpoint: a file, an index.json, or a folder")(
      "seed", po::value<uint64_t>(&f.seed), "use generated weights with this seed instead")(
      "prompt", po::value<std::string>(&f.prompt_text), "prompt token ids, e.g. 1,2,3")(
      "max-new", po::value<int64_t>(&f.max_new)->default_value(16), "tokens to generate")(
      "temperature", po::value<double>(&f.sampling.temperature)->default_value(0.0),
      "sampling temperature; 0 = greedy")("top-p",
                                          po::value<double>(&f.sampling.top_p)->default_value(1.0),
                                          "nucleus sampling mass in (0, 1]")(
      "sample-seed", po::value<uint64_t>(&f.sample_seed)->default_value(0),
      "seed of the sampling draws")(
      "plan", po::value<std::string>(&f.plan_path),
      "run sharded by a partitioner plan (lockstep plan ... -o P.plan): its stages and TP degrees")(
      "stages", po::value<int64_t>(&f.stages), "run sharded: pipeline stages (default 1)")(
      "tp", po::value<int64_t>(&f.tp), "run sharded: tensor-parallel degree per stage (default 1)")(
      "dump-logits", po::value<std::string>(&f.dump),
      "write the logits of every generated token to a float32 .npy [max_new, vocab]");
  AddTextOptions(opts, f.text);
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
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return std::nullopt;
  if (f.config.empty() && f.plan_path.empty()) {
    throw UsageError("missing --model CONFIG (see: lockstep run --help)");
  }
  if (f.weights_path.empty() == !vm.count("seed")) {
    throw UsageError("give exactly one of --weights FILE or --seed S (see: lockstep run --help)");
  }
  if (f.prompt_text.empty() == f.text.text.empty()) {
    throw UsageError("give exactly one of --prompt 1,2,3 or --text \"...\"");
  }
  CheckTextFlags(vm, f.text);
  if (!f.dump.empty()) CheckOutputFile(f.dump, "--dump-logits");
  if (f.max_new < 0) throw UsageError("--max-new must be >= 0, got " + std::to_string(f.max_new));
  if (!(f.sampling.temperature >= 0.0)) throw UsageError("--temperature must be >= 0");
  if (!(f.sampling.top_p > 0.0 && f.sampling.top_p <= 1.0)) {
    throw UsageError("--top-p must be in (0, 1]");
  }
  f.uniform = vm.count("stages") || vm.count("tp");
  if (f.uniform && !f.plan_path.empty()) {
    throw UsageError("give either --plan PLAN or --stages/--tp, not both");
  }
  if (f.uniform) {
    f.stages = vm.count("stages") ? f.stages : 1;
    f.tp = vm.count("tp") ? f.tp : 1;
    if (f.stages < 1 || f.tp < 1) throw UsageError("--stages and --tp must be >= 1");
  }
  f.sampling.seed = f.sample_seed;
  return f;
}

// What the flags name, read and checked: nothing has run yet.
struct LocalInputs {
  std::vector<int32_t> prompt;
  partition::ModelSpec spec;
  std::vector<int32_t> stop;                 // tokens that end the run early
  std::optional<model::ModelLayout> layout;  // sharded runs
  model::LlamaWeights weights;
  std::string weights_format;
};

LocalInputs MakeLocalInputs(const RunFlags& f, const TextIo* text_io) {
  LocalInputs in;
  in.prompt = text_io ? text_io->EncodePrompt() : ParseTokenList(f.prompt_text, "--prompt");
  std::optional<partition::Plan> plan;
  if (!f.plan_path.empty()) plan = partition::ReadPlanFile(f.plan_path);
  // A plan carries its model: --model may be left out (LayoutFromPlan checks a given one).
  in.spec = f.config.empty() ? plan->spec : partition::LoadModelSpec(f.config);
  if (text_io) text_io->CheckVocabulary(in.prompt, in.spec.vocab_size);
  // As the distributed run: the prompt and every new token must have a position.
  launch::CheckPromptsFit(in.spec, {in.prompt}, f.max_new);
  // --text runs end early at the tokenizer's EOS and the model's; --prompt runs generate
  // --max-new tokens, as the distributed run does.
  if (text_io) in.stop = text_io->StopIds();
  if (plan) {
    try {
      in.layout = model::LayoutFromPlan(*plan, in.spec);
    } catch (const Error& e) {
      throw Error(e.code(), f.plan_path + ": " + e.what());
    }
  } else if (f.uniform) {
    if (f.stages > in.spec.num_layers) {
      throw UsageError("--stages " + std::to_string(f.stages) + " exceeds the model's " +
                       std::to_string(in.spec.num_layers) + " layers");
    }
    in.layout = model::ModelLayout::Uniform(in.spec.num_layers, f.stages, f.tp);
  }
  if (!f.weights_path.empty()) {
    in.weights = model::LoadLlamaWeights(model::Checkpoint::Open(f.weights_path), in.spec);
  } else {
    in.weights = model::GenerateLlamaWeights(in.spec, f.seed);
  }
  in.weights_format = model::WeightFormatName(in.weights.format());
  return in;
}

// What a run gave: the tokens (and logits), how it ran and how long it took.
struct RunOutcome {
  model::Generation g;
  std::string mode = "reference";
  int64_t decode_steps = 0, decode_ns = 0, token_latency = 0;
  double seconds = 0;
};

// Generates: the reference model, or every shard in turn; with --text (not --json) the text
// streams to stdout as the tokens come. Takes the weights.
RunOutcome Generate(const RunFlags& f, LocalInputs& in, TextIo* text_io, const Context& ctx) {
  const std::vector<int32_t>& prompt = in.prompt;
  const auto start = std::chrono::steady_clock::now();
  RunOutcome out;
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
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + f.max_new + 1;
  auto generate = [&](auto forward) {
    return model::GenerateWith(timed(forward), prompt, f.max_new, f.sampling,
                               /*keep_logits=*/!f.dump.empty(), in.stop);
  };
  if (f.sharded()) {
    const model::ShardedModel model(in.spec, in.weights, *in.layout);
    out.mode = "sharded " + model.layout().ToString();
    model::ShardedKvCache cache = model.NewCache(capacity);
    out.g = generate([&](const std::vector<int32_t>& tokens) {
      std::vector<model::ShardedStep> step = {{&cache, tokens}};
      return std::move(model.Forward(step)[0]);
    });
  } else {
    const model::ReferenceModel reference(in.spec, std::move(in.weights));
    model::KvCache cache = reference.NewCache(capacity);
    out.g = generate([&](const std::vector<int32_t>& tokens) {
      std::vector<model::SequenceStep> step = {{&cache, tokens}};
      return std::move(reference.Forward(step)[0]);
    });
  }
  out.decode_steps = std::max<int64_t>(calls - 1, 0);  // one sequence: a token each
  out.decode_ns = decode_ns;
  out.token_latency = out.decode_steps > 0 ? decode_ns / out.decode_steps : 0;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

// Logs the time taken, writes the logits file, prints the tokens, the text or the JSON object.
void PrintRun(const RunFlags& f, const LocalInputs& in, const RunOutcome& out, TextIo* text_io,
              const Context& ctx) {
  const model::Generation& g = out.g;
  ctx.log->info("{} prompt + {} generated tokens in {:.3f} s ({}, {}); decode {:.2f} ms/token",
                in.prompt.size(), g.tokens.size(), out.seconds, out.mode, in.weights_format,
                out.token_latency / 1e6);
  if (!f.dump.empty()) {
    std::vector<float> flat;
    for (const std::vector<float>& row : g.logits) flat.insert(flat.end(), row.begin(), row.end());
    model::WriteNpyFloat32(f.dump, static_cast<int64_t>(g.logits.size()), in.spec.vocab_size, flat);
  }
  if (ctx.json) {
    nlohmann::json j = {{"model", in.spec.name},
                        {"mode", out.mode},
                        {"weights_format", in.weights_format},
                        {"prompt", in.prompt},
                        {"tokens", g.tokens}};
    // Wall time of the whole generation (prefill included), as `run --transport` reports it.
    j["seconds"] = out.seconds;
    j["tokens_per_s"] = out.seconds > 0 ? static_cast<double>(g.tokens.size()) / out.seconds : 0.0;
    j["measured_token_latency_ns"] = out.token_latency;
    j["decode_steps"] = out.decode_steps;
    j["decode_tokens"] = out.decode_steps;  // as `run --transport` counts them
    j["decode_tokens_per_s"] = out.decode_ns > 0 ? out.decode_steps * 1e9 / out.decode_ns : 0.0;
    if (!f.dump.empty()) j["logits_file"] = f.dump;
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
}

int Run(const std::vector<std::string>& args, Context& ctx) {
  if (WantsDistributed(args)) return RunDistributed(args, ctx);  // --transport: coordinator/
  const std::optional<RunFlags> parsed = ParseRunFlags(args);
  if (!parsed) return 0;
  const RunFlags& f = *parsed;
  std::optional<TextIo> text_io;
  if (!f.text.text.empty()) text_io.emplace(f.text, f.config);
  TextIo* io = text_io ? &*text_io : nullptr;
  LocalInputs inputs = MakeLocalInputs(f, io);
  const RunOutcome outcome = Generate(f, inputs, io, ctx);
  PrintRun(f, inputs, outcome, io, ctx);
  return 0;
}

}  // namespace

CommandGroup RunCommand() {
  return {"run",
          "generate tokens in this process (fp32 reference, or sharded by a plan or stages x TP)",
          Run};
}

}  // namespace lockstep::cli
