// `lockstep run --transport T`: parses the flags into a launch::RunConfig — workers as threads over
// one shared transport for sim and inproc, `lockstep-worker` processes (found next to this binary)
// for ipc and tcp — runs it (launch/launch.h: deploy, generate, nothing left behind on success or
// failure) and prints the tokens beside the predicted and the measured per-token latency.
// By default the run is self-clocked (Coordinator::RunSelfClocked: one start message, then every
// chip runs on its own, the coordinator only receives the token stream); --barrier runs every
// step through the coordinator instead (Coordinator::Generate), the path that fails over to
// spare chips and reports where a decode step went. --text (text_io.h) takes the barrier path too:
// its request goes in through the admission hook, its text streams as the tokens come and an
// end-of-sequence id ends it, as in one process.
#include "run_distributed.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <utility>

#include "lockstep/common/error.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/launch/launch.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/npy.h"
#include "lockstep/partition/plan.h"
#include "lockstep/schedule/schedule.h"
#include "run_inputs.h"
#include "text_io.h"
#include "token_list.h"

namespace lockstep::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Shard bytes over the time until the last chunk was handed to the control socket.
double ShipMibPerS(const coordinator::RunStats& stats) {
  return stats.ship_ns > 0 ? stats.shard_bytes / 1048576.0 / (stats.ship_ns / 1e9) : 0.0;
}

// A decode step of the mean chip, per token (ns): wall time inside its instructions by kind, the
// rest of its step (between instructions), and the rest of the coordinator's step (`measured`):
// the Step message out and the results back.
struct StepBreakdown {
  int64_t compute = 0, reduce = 0, send = 0, recv = 0, forward = 0, between = 0, control = 0;
};

StepBreakdown Breakdown(const coordinator::RunStats& stats, int64_t measured) {
  StepBreakdown b;
  const int64_t n = stats.decode_chip_steps;
  if (n == 0) return b;
  using schedule::InstrKind;
  const control::StepTimes& t = stats.decode_times;
  b.compute = t.of(InstrKind::kCompute) / n;
  b.reduce = t.of(InstrKind::kReduce) / n;
  b.send = t.of(InstrKind::kSend) / n;
  b.recv = t.of(InstrKind::kRecv) / n;
  b.forward = t.of(InstrKind::kForward) / n;
  const int64_t step = t.step_ns / n;
  b.between = std::max<int64_t>(0, step - b.compute - b.reduce - b.send - b.recv - b.forward);
  b.control = std::max<int64_t>(0, measured - step);
  return b;
}

// The command line of `run --transport`, checked (ParseRunFlags).
struct RunFlags {
  std::string config_path, weights_path, prompt_text, prompts_file, dump, backend,
      topo_name = "node", plan_path, pin_map, cost_params, curve_keys, flight_file,
      checksums = "auto";
  uint64_t seed = 0, sample_seed = 0;
  bool seed_given = false, topology_given = false, curve = false;
  int64_t max_new = 16, heartbeat_ms = 3000, step_timeout_ms = 10000, stall_ms = -1;
  int tp = 0, pp = 0, spare_nodes = 1, tcp_base_port = 0;
  int32_t slots = 0;
  // --pace F (>= 1; 0 = not given): a self-clocked run paced at F x the schedule's times.
  double pace = 0;
  // --barrier: every step a Step to each chip and its answer (failover's path).
  bool barrier = false;
  std::vector<std::string> inject_text;
  std::vector<launch::Injection> injections;
  model::SamplingOptions sampling;
  std::vector<std::vector<int32_t>> prompts;
  transport::LinkChecksums link_checksums{};
  TextFlags text;  // --text: the one prompt, encoded in RunDistributed

  bool threads() const { return backend == "sim" || backend == "inproc"; }
  // Self-clocked (issue #19) unless --barrier: paced or not; over sim in virtual time. A --text
  // run takes the barrier path, whose tokens stream and whose request an EOS id ends.
  bool self_clocked() const { return !barrier && text.text.empty(); }
};

// Parses and checks `args`; nullopt when --help was printed.
std::optional<RunFlags> ParseRunFlags(const std::vector<std::string>& args) {
  RunFlags f;
  po::options_description opts("options");
  opts.add_options()("model", po::value<std::string>(&f.config_path),
                     "config.json, or a folder holding one (required without --plan)")(
      "weights", po::value<std::string>(&f.weights_path),
      "safetensors checkpoint: a file, an index.json, or a folder")(
      "seed", po::value<uint64_t>(&f.seed), "use generated weights with this seed instead")(
      "prompt", po::value<std::string>(&f.prompt_text), "prompt token ids, e.g. 1,2,3")(
      "prompts", po::value<std::string>(&f.prompts_file),
      "a file of prompts, one per line (1,2,3): all run concurrently")(
      "max-new", po::value<int64_t>(&f.max_new)->default_value(16),
      "tokens to generate per prompt")(
      "temperature", po::value<double>(&f.sampling.temperature)->default_value(0.0),
      "sampling temperature; 0 = greedy")(
      "top-p", po::value<double>(&f.sampling.top_p)->default_value(1.0), "nucleus mass in (0, 1]")(
      "sample-seed", po::value<uint64_t>(&f.sample_seed)->default_value(0), "seed of the draws")(
      "transport", po::value<std::string>(&f.backend),
      "sim or inproc (workers as threads), ipc or tcp (worker processes)")(
      "topology", po::value<std::string>(&f.topo_name)->default_value("node"),
      "a topology file (lockstep topo generate), or node, rack or racks:N; with --plan, the "
      "plan's own by default")("spare-nodes", po::value<int>(&f.spare_nodes)->default_value(1),
                               "spare nodes per rack (rack and racks:N)")(
      "plan", po::value<std::string>(&f.plan_path),
      "a plan file (lockstep plan -o); else plan now")(
      "tp", po::value<int>(&f.tp)->default_value(0), "planning: fixed TP degree (0 = search)")(
      "pp", po::value<int>(&f.pp)->default_value(0), "planning: fixed stage count (0 = search)")(
      "cost-params", po::value<std::string>(&f.cost_params),
      "planning: cost figures (lockstep calibrate -o FILE); a --plan carries its own")(
      "slots", po::value<int32_t>(&f.slots)->default_value(0),
      "pipeline slots (sequences in flight); 0 = the number of stages")(
      "heartbeat-timeout-ms", po::value<int64_t>(&f.heartbeat_ms)->default_value(3000),
      "a worker silent this long fails the run")(
      "step-timeout-ms", po::value<int64_t>(&f.step_timeout_ms)->default_value(10000),
      "a link transfer waiting this long fails the run")(
      "pin-map", po::value<std::string>(&f.pin_map),
      "pin each chip's worker to the CPUs this file names (lockstep topo host --map T --json); "
      "a CPU this host lacks stops the run before it starts")(
      "tcp-base-port", po::value<int>(&f.tcp_base_port)->default_value(0),
      "tcp: first link port (0 = derived from the process id)")(
      "inject", po::value<std::vector<std::string>>(&f.inject_text),
      "fault injection (ipc, tcp; repeatable): kill:CHIP@STEP or stop:CHIP@STEP sends SIGKILL or "
      "SIGSTOP to that chip's worker as step STEP starts; the run fails over to a spare chip")(
      "stall-timeout-ms", po::value<int64_t>(&f.stall_ms),
      "no step completing for this long is a stall: report the chips behind and the links "
      "they wait on (default: half the step timeout; 0 = off)")(
      "flight-recorder", po::value<std::string>(&f.flight_file),
      "on a stall, write every worker's last instructions here (JSON; default "
      "/tmp/lockstep-flight-recorder-PID.json)")(
      "curve", "tcp: CURVE-encrypt and authenticate every link with a fresh key pair")(
      "barrier",
      "run every step as a barrier through the coordinator (a Step to every chip, every chip's "
      "answer) instead of self-clocked (the default: one start message, then every chip runs its "
      "program on its own, clocked by its links, and the coordinator only receives the token "
      "stream). The barrier path is the one that fails over to spare chips (--inject, a worker "
      "lost): a self-clocked run does not fail over yet, a lost worker fails it")(
      "pace", po::value<double>(&f.pace),
      "self-clocked: start every instruction no earlier than its scheduled time x F (F >= 1, "
      "time dilation; one host); --json reports how late starts were (schedule_lag_ns). Over "
      "--transport sim a self-clocked run keeps virtual time: every start exactly as scheduled")(
      "link-checksums", po::value<std::string>(&f.checksums)->default_value("auto"),
      "CRC32C on link payloads: auto (ipc and inproc unchecked, tcp checked unless CURVE "
      "authenticates), on (every link; unchecked frames refused) or off")(
      "curve-keys", po::value<std::string>(&f.curve_keys),
      "tcp: CURVE with the key pair in DIR (lockstep keys generate -o DIR) instead")(
      "dump-logits", po::value<std::string>(&f.dump),
      "write each token's logits to a float32 .npy [max_new, vocab]; with --prompts one file "
      "per prompt, FILE with .npy replaced by .<i>.npy");
  AddTextOptions(opts, f.text);
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep run --transport sim|inproc|ipc|tcp --model CONFIG (--weights F | --seed S) "
      "(--prompt 1,2,3 | --prompts FILE | --text T [--chat [--system S]] [--tokenizer DIR] "
      "[--ignore-eos]) [--max-new N] [--topology T] [--plan P | --tp N --pp N] "
      "[--cost-params FILE] [--slots M] [--pace F | --barrier [--inject kill:CHIP@STEP]...] "
      "[--curve | --curve-keys DIR] "
      "[--dump-logits F.npy] "
      "[--json]";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return std::nullopt;
  const std::vector<std::string> backends = {"sim", "inproc", "ipc", "tcp"};
  if (std::find(backends.begin(), backends.end(), f.backend) == backends.end()) {
    throw UsageError("--transport must be sim, inproc, ipc or tcp, got '" + f.backend + "'");
  }
  if (!f.prompt_text.empty() + !f.prompts_file.empty() + !f.text.text.empty() != 1) {
    throw UsageError("give exactly one of --prompt 1,2,3, --prompts FILE or --text \"...\"");
  }
  CheckTextFlags(vm, f.text);
  if (f.max_new < 0) throw UsageError("--max-new must be >= 0");
  if (!(f.sampling.temperature >= 0.0)) throw UsageError("--temperature must be >= 0");
  if (!(f.sampling.top_p > 0.0 && f.sampling.top_p <= 1.0)) throw UsageError("--top-p in (0, 1]");
  if (f.tp < 0 || f.pp < 0 || f.slots < 0 || f.heartbeat_ms < 1 || f.step_timeout_ms < 1) {
    throw UsageError("--tp, --pp, --slots must be >= 0 and the timeouts >= 1");
  }
  f.curve = vm.count("curve") > 0 || !f.curve_keys.empty();
  if (f.curve && f.backend != "tcp") throw UsageError("--curve needs --transport tcp");
  f.link_checksums = ParseChecksumsFlag(f.checksums);
  f.barrier = vm.count("barrier") > 0;
  if (f.barrier && vm.count("pace")) {
    throw UsageError("--pace paces a self-clocked run; leave out --barrier");
  }
  if (!f.text.text.empty() && vm.count("pace")) {
    throw UsageError(
        "--pace: a --text run takes the barrier path (its text streams, an EOS ends it)");
  }
  if (vm.count("pace") && !(f.pace >= 1)) {
    std::ostringstream got;
    got << f.pace;
    throw UsageError("--pace must be >= 1 (a time dilation of the schedule), got " + got.str());
  }
  f.sampling.seed = f.sample_seed;
  for (const std::string& t : f.inject_text) f.injections.push_back(launch::ParseInjection(t));
  if (!f.injections.empty() && (f.backend == "sim" || f.backend == "inproc")) {
    throw UsageError("--inject needs worker processes (--transport ipc or tcp)");
  }
  if (!f.injections.empty() && f.self_clocked()) {
    throw UsageError(
        "--inject: failover runs on the barrier path only (a self-clocked run does not fail over "
        "yet); add --barrier");
  }
  if (f.self_clocked() && f.max_new < 1) {
    throw UsageError("a self-clocked run needs --max-new >= 1 (or --barrier)");
  }
  if (!f.prompts_file.empty()) {
    f.prompts = ReadPromptsFile(f.prompts_file);
  } else if (!f.prompt_text.empty()) {
    f.prompts = {ParseTokenList(f.prompt_text, "--prompt")};
  }

  f.seed_given = vm.count("seed") > 0;
  f.topology_given = !vm["topology"].defaulted();
  return f;
}

// The run the flags ask for (inputs loaded and checked: nothing has started yet).
launch::RunConfig MakeRunConfig(const RunFlags& f, Context& ctx) {
  const bool threads = f.threads();
  launch::RunConfig config;
  config.inputs = LoadRunInputs(
      {f.config_path, f.weights_path, f.seed_given ? std::optional<uint64_t>(f.seed) : std::nullopt,
       f.topology_given ? f.topo_name : "", f.spare_nodes, f.plan_path, f.tp, f.pp},
      f.cost_params);
  launch::CheckPromptsFit(config.inputs.spec, f.prompts, f.max_new);
  config.deploy.slots = f.slots;
  if (f.self_clocked()) {
    // One prefill program per bucket the prompts need (PromptBucket's powers of two from 16).
    std::vector<int64_t>& buckets = config.deploy.prompt_buckets;
    for (const std::vector<int32_t>& p : f.prompts) {
      buckets.push_back(schedule::PromptBucket(static_cast<int64_t>(p.size()), {}));
    }
    std::sort(buckets.begin(), buckets.end());
    buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  }
  config.deploy.transport.backend = f.backend;
  config.deploy.transport.step_timeout_ms = f.step_timeout_ms;
  config.deploy.transport.tcp_base_port = f.tcp_base_port;  // 0: derived from the process id
  config.deploy.transport.checksums = f.link_checksums;
  config.workers = threads ? launch::Workers::kThreads : launch::Workers::kProcesses;
  config.pin_map = f.pin_map;
  config.curve = f.curve;
  config.curve_keys = f.curve_keys;
  config.heartbeat_timeout = std::chrono::milliseconds(f.heartbeat_ms);
  if (f.stall_ms >= 0) config.stall_timeout = std::chrono::milliseconds(f.stall_ms);
  config.flight_recorder_file = f.flight_file;
  config.keep_logits = !f.dump.empty();  // else the tokens alone come back from the sampling chip
  // Failover needs worker processes: a thread cannot be killed and replaced.
  config.failover = !threads && !f.self_clocked();
  config.injections = f.injections;
  config.log = ctx.log;
  return config;
}

// What a run gave: its results (partial ones when it stopped for want of a spare), its failovers
// and statistics.
struct RunOutcome {
  std::vector<coordinator::Finished> results;
  std::vector<coordinator::FailoverRecord> failovers;
  coordinator::RunStats stats;
  // A self-clocked run's own figures (its lag behind the schedule).
  std::optional<coordinator::SelfClockedResult> clocked;
  std::optional<Error> failure;
  double load_s = 0;
  // Peak resident memory (bytes) of this process and of every worker process by chip.
  int64_t coordinator_rss = 0;
  std::vector<std::pair<int32_t, int64_t>> worker_rss;
};

// A run's figures: measured beside predicted (PrintRun).
struct RunFigures {
  int64_t measured = 0, compute_per_token = 0, predicted = 0;
  double tokens_per_s = 0, decode_tokens_per_s = 0, predicted_decode_tokens_per_s = 0,
         prediction_error = 0, control_per_token = 0;
  StepBreakdown parts;
};

RunFigures FiguresOf(const RunFlags& f, launch::Launch& launch, const RunOutcome& outcome) {
  const coordinator::Deployment& deployment = launch.deployment();
  const coordinator::RunStats& stats = outcome.stats;
  const partition::Plan& plan = launch.plan();
  RunFigures g;
  g.measured = stats.decode_steps > 0 ? stats.decode_wall_ns / stats.decode_steps : 0;
  g.compute_per_token = stats.decode_steps > 0 ? stats.decode_compute_ns / stats.decode_steps : 0;
  g.tokens_per_s =
      stats.wall_ns > 0 ? static_cast<double>(stats.tokens) * 1e9 / stats.wall_ns : 0.0;
  // Throughput of the decode steps: every sequence in flight gains a token per step.
  g.decode_tokens_per_s = stats.decode_wall_ns > 0 ? static_cast<double>(stats.decode_tokens) *
                                                         1e9 / stats.decode_wall_ns
                                                   : 0.0;
  // The prediction for this run (partition::RuntimeStepNs): the compiled schedule's step for the
  // sequences in flight, the chips' compute over the cores and memory they share and the
  // runtime's own terms (control hops on the barrier path, step bookkeeping) from the plan's cost
  // figures — a host calibrated by `lockstep calibrate --host` has them; a chip whose runtime is
  // its schedule has none. Every sequence in flight gains a token per step.
  const int64_t in_flight =
      std::min<int64_t>(static_cast<int64_t>(f.prompts.size()), deployment.slots);
  // A slot with no sequence computes nothing: fewer sequences than slots take the step
  // compiled for those in flight.
  coordinator::ScheduleStep step{deployment.schedule_step_ns, deployment.schedule_compute_ns};
  if (in_flight > 0 && in_flight < deployment.slots) {
    step = coordinator::InFlightStep(plan, deployment.spec, launch.topology(),
                                     static_cast<int32_t>(in_flight));
  }
  // Self-clocked, the coordinator is off the token path: no control message per step.
  partition::Plan priced = plan;
  if (f.self_clocked()) priced.runtime_params.control_hops = 0;
  g.predicted = partition::RuntimeStepNs(priced, step.step_ns, step.compute_ns);
  g.predicted_decode_tokens_per_s =
      g.predicted > 0 ? static_cast<double>(in_flight) * 1e9 / static_cast<double>(g.predicted)
                      : 0.0;
  g.prediction_error =
      g.predicted > 0 && g.measured > 0 ? static_cast<double>(g.measured) / g.predicted - 1.0 : 0.0;
  g.parts = Breakdown(stats, g.measured);
  // Issue #19's figure: control-plane messages per generated token in the decode steps.
  g.control_per_token = stats.decode_tokens > 0
                            ? static_cast<double>(stats.decode_control_messages) /
                                  static_cast<double>(stats.decode_tokens)
                            : 0.0;
  return g;
}

// The barrier path: where a decode step went, on the coordinator and on the mean chip.
void LogBreakdown(const coordinator::RunStats& stats, const RunFigures& g, Context& ctx) {
  const StepBreakdown& parts = g.parts;
  ctx.log->info(
      "decode step: {:.2f} ms measured, of it {:.2f} ms compute (slowest rank per "
      "stage); {} link hops in a row plus the coordinator's 2",
      g.measured / 1e6, g.compute_per_token / 1e6, stats.critical_hops);
  ctx.log->info(
      "decode step of the mean chip: {:.2f} ms compute, {:.2f} reduce, {:.2f} send, {:.2f} "
      "waiting on links (recv {:.2f}, forward {:.2f}), {:.2f} between instructions; {:.2f} ms on "
      "the control plane (Step and result)",
      parts.compute / 1e6, parts.reduce / 1e6, parts.send / 1e6, (parts.recv + parts.forward) / 1e6,
      parts.recv / 1e6, parts.forward / 1e6, parts.between / 1e6, parts.control / 1e6);
}

// Logs where the time went: tokens and steps, the decode step, the shards, peak memory.
void LogRun(const RunOutcome& outcome, const RunFigures& g, Context& ctx) {
  const coordinator::RunStats& stats = outcome.stats;
  ctx.log->info("{} token(s) in {} steps, {:.3f} s ({:.1f} tokens/s); loading took {:.2f} s",
                stats.tokens, stats.steps, stats.wall_ns / 1e9, g.tokens_per_s, outcome.load_s);
  if (outcome.clocked) {
    const control::LagHistogram& lag = outcome.clocked->lag;
    ctx.log->info(
        "self-clocked: {} token(s) in {} token messages after the first, {:.1f} tokens/s, {:.2f} "
        "ms between them; schedule lag p50 {} ns, p95 {} ns, max {} ns over {} instructions",
        stats.decode_tokens, stats.decode_steps, g.decode_tokens_per_s, g.measured / 1e6,
        lag.Percentile(0.5), lag.Percentile(0.95), lag.max_ns(), lag.count());
  } else {
    ctx.log->info("decode: {} token(s) in {} steps, {:.1f} tokens/s over the decode steps",
                  stats.decode_tokens, stats.decode_steps, g.decode_tokens_per_s);
    LogBreakdown(stats, g, ctx);
  }
  ctx.log->info(
      "shards: {:.1f} MiB shipped in {:.2f} s ({:.1f} MiB/s), workers ready after {:.2f} s",
      stats.shard_bytes / 1048576.0, stats.ship_ns / 1e9, ShipMibPerS(stats),
      stats.deploy_ns / 1e9);
  std::string rss_text;
  for (const auto& [chip, bytes] : outcome.worker_rss) {
    rss_text += (rss_text.empty() ? "" : ", ") + std::to_string(chip) + ": " +
                std::to_string(bytes >> 20) + " MiB";
  }
  ctx.log->info("peak resident memory: this process {} MiB{}", outcome.coordinator_rss >> 20,
                rss_text.empty() ? "" : "; worker processes by chip " + rss_text);
}

// --dump-logits: one .npy per request (PATH, or PATH's stem + ".i.npy" for several); their paths.
std::vector<std::string> WriteLogits(const RunFlags& f, const partition::ModelSpec& spec,
                                     const std::vector<coordinator::Finished>& results) {
  std::vector<std::string> dumps;
  for (size_t i = 0; i < results.size() && !f.dump.empty(); ++i) {
    std::string path = f.dump;
    if (results.size() > 1) {
      const std::string stem =
          path.size() > 4 && path.ends_with(".npy") ? path.substr(0, path.size() - 4) : path;
      path = stem + "." + std::to_string(i) + ".npy";
    }
    std::vector<float> flat;
    for (const std::vector<float>& row : results[i].logits) {
      flat.insert(flat.end(), row.begin(), row.end());
    }
    model::WriteNpyFloat32(path, static_cast<int64_t>(results[i].logits.size()), spec.vocab_size,
                           flat);
    dumps.push_back(path);
  }
  return dumps;
}

// --json: the run as one object.
void PrintRunJson(const RunFlags& f, launch::Launch& launch, const RunOutcome& outcome,
                  const RunFigures& g, const std::vector<std::string>& dumps,
                  const TextIo* text_io) {
  const partition::ModelSpec& spec = launch.config().inputs.spec;
  const coordinator::Deployment& deployment = launch.deployment();
  const std::vector<coordinator::Finished>& results = outcome.results;
  const coordinator::RunStats& stats = outcome.stats;
  const StepBreakdown& parts = g.parts;
  nlohmann::json rss_workers = nlohmann::json::array();
  for (const auto& [chip, bytes] : outcome.worker_rss) {
    rss_workers.push_back({{"chip", chip}, {"bytes", bytes}});
  }
  nlohmann::json reqs = nlohmann::json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    reqs.push_back({{"prompt", f.prompts[i]}, {"tokens", results[i].tokens}});
  }
  nlohmann::json stages = nlohmann::json::array();
  for (const partition::StagePlan& s : launch.plan().stages) {
    stages.push_back({{"first_layer", s.first_layer},
                      {"end_layer", s.end_layer},
                      {"tp", s.tp},
                      {"chips", s.chips}});
  }
  nlohmann::json j = {{"model", spec.name},
                      {"transport", f.backend},
                      {"link_checksums", f.checksums},
                      {"topology", launch.topology().name()},
                      {"chips", deployment.chips.size()},
                      {"stages", stages},
                      {"slots", deployment.slots},
                      {"tokens", results.front().tokens},
                      {"requests", reqs},
                      {"steps", stats.steps},
                      {"plan_token_latency_ns", deployment.predicted_token_latency_ns},
                      {"predicted_token_latency_ns", g.predicted},
                      {"measured_token_latency_ns", g.measured},
                      {"prediction_error", g.prediction_error},
                      {"cost_params", launch.plan().cost_params_name},
                      {"tokens_per_s", g.tokens_per_s},
                      {"decode_steps", stats.decode_steps},
                      {"decode_tokens", stats.decode_tokens},
                      {"predicted_decode_tokens_per_s", g.predicted_decode_tokens_per_s},
                      {"decode_tokens_per_s", g.decode_tokens_per_s},
                      {"load_seconds", outcome.load_s},
                      {"shard_bytes", stats.shard_bytes},
                      {"shard_ship_seconds", stats.ship_ns / 1e9},
                      {"shard_ship_mib_per_s", ShipMibPerS(stats)},
                      {"deploy_seconds", stats.deploy_ns / 1e9},
                      {"measured_compute_ns_per_token", g.compute_per_token},
                      {"critical_hops", stats.critical_hops},
                      // Per token: a Step out and a result back, or none (self-clocked).
                      {"control_hops", outcome.clocked ? 0 : 2},
                      {"control_messages_per_token", g.control_per_token}};
  if (!dumps.empty()) j["logits_files"] = dumps;
  if (!outcome.clocked) {  // the chips' step times come with the barrier's results only
    j["decode_breakdown_ns_per_token"] = {
        {"compute", parts.compute}, {"reduce", parts.reduce},
        {"send", parts.send},       {"recv", parts.recv},
        {"forward", parts.forward}, {"between_instructions", parts.between},
        {"control", parts.control}};
  }
  j["self_clocked"] = outcome.clocked.has_value();
  if (outcome.clocked) {
    auto lag = [](const control::LagHistogram& h) {
      return nlohmann::json{{"p50", h.Percentile(0.5)},
                            {"p95", h.Percentile(0.95)},
                            {"p99", h.Percentile(0.99)},
                            {"max", h.max_ns()},
                            {"instructions", h.count()}};
    };
    nlohmann::json chips = nlohmann::json::array();
    for (const coordinator::ChipLag& c : outcome.clocked->chips) {
      nlohmann::json one = lag(c.lag);
      one["chip"] = c.chip;
      chips.push_back(one);
    }
    j["schedule_lag_ns"] = lag(outcome.clocked->lag);
    j["schedule_lag_ns"]["chips"] = chips;
    j["pace"] = f.pace;
    j["virtual_time"] = f.backend == "sim";
  }
  if (text_io) {
    // As the in-process run: "stop" at an end-of-sequence token, the text without it.
    const std::vector<int32_t>& tokens = results.front().tokens;
    const std::vector<int32_t> stop = text_io->StopIds();
    const bool stopped =
        !tokens.empty() && std::find(stop.begin(), stop.end(), tokens.back()) != stop.end();
    j["finish_reason"] = stopped ? "stop" : "length";
    j["text"] = text_io->Decode({tokens.begin(), tokens.end() - (stopped ? 1 : 0)});
  }
  j["peak_rss_bytes"] = {{"coordinator", outcome.coordinator_rss}, {"workers", rss_workers}};
  nlohmann::json fo = nlohmann::json::array();
  for (const coordinator::FailoverRecord& r : outcome.failovers) {
    fo.push_back({{"chip", r.chip},
                  {"spare", r.spare},
                  {"cause", r.cause},
                  {"step", r.step},
                  {"detect_ms", r.detect_ms},
                  {"recover_ms", r.recover_ms}});
  }
  j["failovers"] = fo;
  j["partial"] = outcome.failure.has_value();
  if (outcome.failure) j["error"] = outcome.failure->what();
  PrintJson(j);
}

// Predicted beside measured, one line.
std::string FiguresLine(launch::Launch& launch, const RunFigures& g) {
  std::ostringstream out;
  out << "predicted token latency " << g.predicted << " ns (" << launch.topology().spec_of(0).name
      << "), measured " << g.measured << " ns on this host (error " << std::showpos << std::fixed
      << std::setprecision(1) << 100 * g.prediction_error << std::noshowpos << "%), "
      << std::defaultfloat << g.tokens_per_s << " tokens/s (" << g.decode_tokens_per_s
      << " tokens/s over the decode steps, " << g.predicted_decode_tokens_per_s << " predicted)";
  return out.str();
}

// The tokens of each request, a line each, then predicted beside measured.
void PrintRunText(launch::Launch& launch, const RunOutcome& outcome, const RunFigures& g) {
  for (const coordinator::Finished& r : outcome.results) {
    for (size_t i = 0; i < r.tokens.size(); ++i) std::cout << (i ? " " : "") << r.tokens[i];
    std::cout << "\n";
  }
  std::cout << FiguresLine(launch, g) << "\n";
}

// Logs where the time went, writes the logits files, prints the tokens (or the JSON object); with
// --text (its text streamed already) the rest of the text, and the figures go to the log.
void PrintRun(const RunFlags& f, launch::Launch& launch, const RunOutcome& outcome, TextIo* text_io,
              Context& ctx) {
  const RunFigures g = FiguresOf(f, launch, outcome);
  LogRun(outcome, g, ctx);
  const std::vector<std::string> dumps =
      WriteLogits(f, launch.config().inputs.spec, outcome.results);
  if (ctx.json) {
    PrintRunJson(f, launch, outcome, g, dumps, text_io);
  } else if (text_io) {
    text_io->Finish();
    ctx.log->info("{}", FiguresLine(launch, g));
  } else {
    PrintRunText(launch, outcome, g);
  }
}

// --text: the one request through the coordinator's admission hook (as a server's are), so that
// it ends at an end-of-sequence token — cancelled there, its slot freed — as the in-process run
// ends; its text goes to stdout as the tokens come when `stream`. `result` gets every token as it
// arrives (the end-of-sequence one included), so a run that fails keeps what it produced.
void GenerateText(coordinator::Coordinator& coord, const coordinator::Request& request,
                  TextIo& text_io, bool stream, coordinator::Finished& result) {
  const std::vector<int32_t> stop = text_io.StopIds();
  bool submitted = false, finished = false, stopped = false;
  std::vector<uint64_t> cancel;
  result.id = request.id;
  coordinator::Admission admission;
  admission.poll = [&](const std::function<void(coordinator::Request)>& submit, bool) {
    if (!std::exchange(submitted, true)) submit(request);
    return !finished;
  };
  admission.on_finished = [&](coordinator::Finished) { finished = true; };
  admission.cancelled = [&] { return std::exchange(cancel, {}); };
  coord.Generate(
      {},
      [&](uint64_t, int32_t token, int64_t) {
        if (stopped) return;
        result.tokens.push_back(token);
        if (std::find(stop.begin(), stop.end(), token) != stop.end()) {
          stopped = true;
          cancel.push_back(request.id);
        } else if (stream) {
          text_io.Stream({token});
        }
      },
      &admission);
}

}  // namespace

bool WantsDistributed(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--transport" || a.rfind("--transport=", 0) == 0) return true;
  }
  return false;
}

int RunDistributed(const std::vector<std::string>& args, Context& ctx) {
  std::optional<RunFlags> parsed = ParseRunFlags(args);
  if (!parsed) return 0;
  std::optional<TextIo> text_io;  // --text: the one prompt through the tokenizer
  if (!parsed->text.text.empty()) {
    text_io.emplace(parsed->text, parsed->config_path);
    parsed->prompts = {text_io->EncodePrompt()};
  }
  const RunFlags& f = *parsed;
  // Everything that can be wrong with the inputs is checked before anything starts.
  if (!f.dump.empty()) CheckOutputFile(f.dump, "--dump-logits");
  const Clock::time_point load_start = Clock::now();
  launch::Launch launch(MakeRunConfig(f, ctx));
  if (text_io) text_io->CheckVocabulary(f.prompts.front(), launch.config().inputs.spec.vocab_size);
  const partition::Plan& plan = launch.plan();
  const coordinator::Deployment& deployment = launch.deployment();
  std::string layout;
  for (const partition::StagePlan& s : plan.stages) {
    layout += (layout.empty() ? "" : " ") + std::to_string(s.end_layer - s.first_layer) + "L x tp" +
              std::to_string(s.tp);
  }
  ctx.log->info("plan: {} stage(s) [{}] on {} chips of {}; schedule {} slot(s); {} shard bytes",
                plan.stages.size(), layout, deployment.chips.size(), launch.topology().name(),
                deployment.slots, deployment.shard_bytes());
  coordinator::Coordinator& coord = launch.Start();
  launch.Deploy();
  RunOutcome outcome;
  outcome.load_s = std::chrono::duration<double>(Clock::now() - load_start).count();

  std::vector<coordinator::Request> requests;
  for (size_t i = 0; i < f.prompts.size(); ++i) {
    requests.push_back({static_cast<uint64_t>(i), f.prompts[i], f.max_new, f.sampling});
  }
  // No spare left: the run stops, but what it produced is printed (partial) before the error.
  coordinator::Finished text_result;  // --text: its tokens as they came
  try {
    if (text_io) {  // the barrier path (self_clocked() is false)
      GenerateText(coord, requests.front(), *text_io, !ctx.json, text_result);
      outcome.results = {text_result};
    } else if (f.self_clocked()) {
      coordinator::SelfClockedOptions so;
      so.pace = f.pace;
      so.virtual_time = f.backend == "sim";
      outcome.clocked = coord.RunSelfClocked(requests, so);
      outcome.results = outcome.clocked->finished;
    } else {
      outcome.results =
          coord.Generate(requests, [&](uint64_t request, int32_t token, int64_t index) {
            ctx.log->debug("request {} token {}: {}", request, index, token);
          });
    }
  } catch (const Error& e) {
    if (coord.failovers().empty()) throw;
    outcome.failure = e;
    outcome.results = text_io ? std::vector<coordinator::Finished>{text_result} : coord.partial();
  }
  outcome.failovers = coord.failovers();
  outcome.stats = coord.stats();
  if (outcome.clocked) {
    // Self-clocked: the steps overlap (no barrier), so a decode step's time is the token stream's:
    // from the message before a decode step's tokens to them (one message per step that drew a
    // token). The workers' per-step breakdown is not reported on this path.
    coordinator::RunStats& stats = outcome.stats;
    const coordinator::SelfClockedResult& c = *outcome.clocked;
    stats.steps = c.steps;
    stats.tokens = c.tokens;
    stats.wall_ns = c.wall_ns;
    stats.decode_steps = c.decode_messages;
    stats.decode_tokens = c.decode_tokens;
    stats.decode_wall_ns = c.decode_wall_ns;
    stats.decode_control_messages = c.decode_messages;
  }
  // Peak resident memory of every process of the run (the workers' before they exit).
  outcome.worker_rss = launch.WorkerPeakRss();
  launch.Stop();
  rusage self_usage{};
  getrusage(RUSAGE_SELF, &self_usage);
  outcome.coordinator_rss = static_cast<int64_t>(self_usage.ru_maxrss) * 1024;
  PrintRun(f, launch, outcome, text_io ? &*text_io : nullptr, ctx);
  if (outcome.failure)
    throw *outcome.failure;  // after the partial output: one line on stderr, exit 1
  return 0;
}

}  // namespace lockstep::cli
