// `lockstep run --transport T`: plans (or reads --plan), compiles the static schedule, cuts the
// shards, then starts a coordinator in this process and one worker per used chip — threads over
// one shared transport for sim and inproc, `lockstep-worker` processes (found next to this
// binary) for ipc and tcp — deploys, generates, prints the tokens beside the predicted and the
// measured per-token latency, and leaves nothing behind: on success and on failure every worker
// is told to stop, given a short grace period, then killed and reaped, and the run directory
// (control and ipc socket files) is removed.
#include "run_distributed.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "launcher.h"
#include "lockstep/common/error.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/coordinator/deployment.h"
#include "lockstep/coordinator/failover.h"
#include "lockstep/coordinator/worker_agent.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/npy.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/transport/curve.h"
#include "lockstep/transport/transport.h"
#include "pin_map.h"
#include "run_inputs.h"
#include "token_list.h"
#include "topology_arg.h"

namespace lockstep::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// --inject kill:CHIP@STEP / stop:CHIP@STEP: the launcher signals that chip's worker process
// as step STEP starts.
struct Injection {
  int signal = SIGKILL;
  int32_t chip = 0;
  int64_t step = 0;
};

Injection ParseInjection(const std::string& text) {
  const size_t colon = text.find(':'), at = text.find('@');
  const std::string kind = text.substr(0, colon);
  Injection inj;
  try {
    if (colon == std::string::npos || at == std::string::npos || at < colon) throw 0;
    if (kind != "kill" && kind != "stop") throw 0;
    inj.signal = kind == "kill" ? SIGKILL : SIGSTOP;
    size_t used = 0;
    const std::string chip = text.substr(colon + 1, at - colon - 1);
    const std::string step = text.substr(at + 1);
    inj.chip = static_cast<int32_t>(std::stol(chip, &used));
    if (used != chip.size() || inj.chip < 0) throw 0;
    inj.step = std::stoll(step, &used);
    if (used != step.size() || inj.step < 0) throw 0;
  } catch (...) {
    throw UsageError("--inject takes kill:CHIP@STEP or stop:CHIP@STEP (e.g. kill:5@3), got '" +
                     text + "'");
  }
  return inj;
}

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

}  // namespace

bool WantsDistributed(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--transport" || a.rfind("--transport=", 0) == 0) return true;
  }
  return false;
}

int RunDistributed(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string config, weights_path, prompt_text, prompts_file, dump, backend,
      topo_name = "node", plan_path, pin_map, curve_keys, flight_file;
  uint64_t seed = 0, sample_seed = 0;
  int64_t max_new = 16, heartbeat_ms = 3000, step_timeout_ms = 10000, stall_ms = -1;
  int tp = 0, pp = 0, spare_nodes = 1, tcp_base_port = 0;
  int32_t slots = 0;
  std::vector<std::string> inject_text;
  model::SamplingOptions sampling;
  opts.add_options()("model", po::value<std::string>(&config),
                     "config.json, or a folder holding one (required without --plan)")(
      "weights", po::value<std::string>(&weights_path),
      "safetensors checkpoint: a file, an index.json, or a folder")(
      "seed", po::value<uint64_t>(&seed), "use generated weights with this seed instead")(
      "prompt", po::value<std::string>(&prompt_text), "prompt token ids, e.g. 1,2,3")(
      "prompts", po::value<std::string>(&prompts_file),
      "a file of prompts, one per line (1,2,3): all run concurrently")(
      "max-new", po::value<int64_t>(&max_new)->default_value(16), "tokens to generate per prompt")(
      "temperature", po::value<double>(&sampling.temperature)->default_value(0.0),
      "sampling temperature; 0 = greedy")(
      "top-p", po::value<double>(&sampling.top_p)->default_value(1.0), "nucleus mass in (0, 1]")(
      "sample-seed", po::value<uint64_t>(&sample_seed)->default_value(0), "seed of the draws")(
      "transport", po::value<std::string>(&backend),
      "sim or inproc (workers as threads), ipc or tcp (worker processes)")(
      "topology", po::value<std::string>(&topo_name)->default_value("node"),
      "a topology file (lockstep topo generate), or node, rack or racks:N; with --plan, the "
      "plan's own by default")("spare-nodes", po::value<int>(&spare_nodes)->default_value(1),
                               "spare nodes per rack (rack and racks:N)")(
      "plan", po::value<std::string>(&plan_path), "a plan file (lockstep plan -o); else plan now")(
      "tp", po::value<int>(&tp)->default_value(0), "planning: fixed TP degree (0 = search)")(
      "pp", po::value<int>(&pp)->default_value(0), "planning: fixed stage count (0 = search)")(
      "slots", po::value<int32_t>(&slots)->default_value(0),
      "pipeline slots (sequences in flight); 0 = the number of stages")(
      "heartbeat-timeout-ms", po::value<int64_t>(&heartbeat_ms)->default_value(3000),
      "a worker silent this long fails the run")(
      "step-timeout-ms", po::value<int64_t>(&step_timeout_ms)->default_value(10000),
      "a link transfer waiting this long fails the run")(
      "pin-map", po::value<std::string>(&pin_map),
      "pin each chip's worker to the CPUs this file names (lockstep topo host --map T --json); "
      "a CPU this host lacks stops the run before it starts")(
      "tcp-base-port", po::value<int>(&tcp_base_port)->default_value(0),
      "tcp: first link port (0 = derived from the process id)")(
      "inject", po::value<std::vector<std::string>>(&inject_text),
      "fault injection (ipc, tcp; repeatable): kill:CHIP@STEP or stop:CHIP@STEP sends SIGKILL or "
      "SIGSTOP to that chip's worker as step STEP starts; the run fails over to a spare chip")(
      "stall-timeout-ms", po::value<int64_t>(&stall_ms),
      "no step completing for this long is a stall: report the chips behind and the links "
      "they wait on (default: half the step timeout; 0 = off)")(
      "flight-recorder", po::value<std::string>(&flight_file),
      "on a stall, write every worker's last instructions here (JSON; default "
      "/tmp/lockstep-flight-recorder-PID.json)")(
      "curve", "tcp: CURVE-encrypt and authenticate every link with a fresh key pair")(
      "curve-keys", po::value<std::string>(&curve_keys),
      "tcp: CURVE with the key pair in DIR (lockstep keys generate -o DIR) instead")(
      "dump-logits", po::value<std::string>(&dump),
      "write each token's logits to a float32 .npy [max_new, vocab]; with --prompts one file "
      "per prompt, FILE with .npy replaced by .<i>.npy");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep run --transport sim|inproc|ipc|tcp --model CONFIG (--weights F | --seed S) "
      "(--prompt 1,2,3 | --prompts FILE) [--max-new N] [--topology T] [--plan P | --tp N --pp N] "
      "[--slots M] [--inject kill:CHIP@STEP]... [--curve | --curve-keys DIR] [--dump-logits F.npy] "
      "[--json]";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return 0;
  const std::vector<std::string> backends = {"sim", "inproc", "ipc", "tcp"};
  if (std::find(backends.begin(), backends.end(), backend) == backends.end()) {
    throw UsageError("--transport must be sim, inproc, ipc or tcp, got '" + backend + "'");
  }
  if (prompt_text.empty() == prompts_file.empty()) {
    throw UsageError("give exactly one of --prompt 1,2,3 or --prompts FILE");
  }
  if (max_new < 0) throw UsageError("--max-new must be >= 0");
  if (!(sampling.temperature >= 0.0)) throw UsageError("--temperature must be >= 0");
  if (!(sampling.top_p > 0.0 && sampling.top_p <= 1.0)) throw UsageError("--top-p in (0, 1]");
  if (tp < 0 || pp < 0 || slots < 0 || heartbeat_ms < 1 || step_timeout_ms < 1) {
    throw UsageError("--tp, --pp, --slots must be >= 0 and the timeouts >= 1");
  }
  const bool curve = vm.count("curve") > 0 || !curve_keys.empty();
  if (curve && backend != "tcp") throw UsageError("--curve needs --transport tcp");
  sampling.seed = sample_seed;
  std::vector<Injection> injections;
  for (const std::string& t : inject_text) injections.push_back(ParseInjection(t));
  if (!injections.empty() && (backend == "sim" || backend == "inproc")) {
    throw UsageError("--inject needs worker processes (--transport ipc or tcp)");
  }
  const std::vector<std::vector<int32_t>> prompts =
      prompts_file.empty()
          ? std::vector<std::vector<int32_t>>{ParseTokenList(prompt_text, "--prompt")}
          : ReadPromptsFile(prompts_file);

  // Everything that can be wrong with the inputs is checked before anything starts.
  if (!dump.empty()) CheckOutputFile(dump, "--dump-logits");
  const Clock::time_point load_start = Clock::now();
  RunInputs inputs = LoadRunInputs(
      {config, weights_path, vm.count("seed") ? std::optional<uint64_t>(seed) : std::nullopt,
       vm["topology"].defaulted() ? "" : topo_name, spare_nodes, plan_path, tp, pp});
  const partition::ModelSpec& spec = inputs.spec;
  const model::LlamaWeights& weights = inputs.weights;
  topology::Topology& topo = inputs.topo;  // failover patches it
  const partition::Plan& plan = inputs.plan;
  coordinator::DeployOptions deploy_options;
  deploy_options.slots = slots;
  control::TransportSettings& ts = deploy_options.transport;
  ts.backend = backend;
  ts.step_timeout_ms = step_timeout_ms;
  ts.tcp_base_port = tcp_base_port > 0 ? tcp_base_port : DefaultTcpBasePort(topo.chip_count());
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, p.size());
  if (spec.max_position_embeddings > 0 && longest + max_new > spec.max_position_embeddings) {
    throw InvalidInput("a prompt of " + std::to_string(longest) + " tokens + --max-new " +
                       std::to_string(max_new) + " exceeds the model's " +
                       std::to_string(spec.max_position_embeddings) + " positions");
  }
  Launch launch(ctx.log);
  ts.ipc_dir = launch.dir().string();
  // CURVE: the run's key pair lives in files each worker reads itself (only the public key goes
  // over the control socket); a fresh pair goes to the run directory, removed with it.
  fs::path key_dir = curve_keys;
  if (curve) {
    if (key_dir.empty()) {
      key_dir = launch.dir() / "keys";
      transport::WriteCurveKeyPair(transport::GenerateCurveKeyPair(), key_dir);
    }
    ts.curve = true;
    ts.curve_public_key = transport::ReadCurveKeyPair(key_dir).public_key;
  }
  coordinator::Deployment deployment =
      coordinator::MakeDeployment(plan, spec, topo, weights, deploy_options);
  if (!pin_map.empty()) {
    ApplyPinMap(ReadPinMap(pin_map), pin_map, topology::DiscoverHost(), deployment);
  }
  std::string layout;
  for (const partition::StagePlan& s : plan.stages) {
    layout += (layout.empty() ? "" : " ") + std::to_string(s.end_layer - s.first_layer) + "L x tp" +
              std::to_string(s.tp);
  }
  ctx.log->info("plan: {} stage(s) [{}] on {} chips of {}; schedule {} slot(s); {} shard bytes",
                plan.stages.size(), layout, deployment.chips.size(), topo.name(), deployment.slots,
                deployment.shard_bytes());

  const bool threads = backend == "sim" || backend == "inproc";
  coordinator::CoordinatorOptions co;
  co.address =
      backend == "tcp" ? "tcp://127.0.0.1:0" : "ipc://" + (launch.dir() / "control").string();
  co.heartbeat_timeout = std::chrono::milliseconds(heartbeat_ms);
  // Links open within their connect timeout or fail; 30 s bounds a deploy that neither
  // finishes nor fails (so a test's own timeout never has to fire).
  // Starting a worker process takes a while (fork, exec, loading; much longer under a
  // sanitizer), and they start one after another: every wait grows with the chip count.
  const int64_t chips = static_cast<int64_t>(deployment.chips.size());
  const std::chrono::milliseconds startup_allowance(250 * chips);
  // Shipping, checking and parsing shards takes time too: allow 1 s per 8 MiB on top (a 205M fp32
  // model on one chip is 820 MB; a loaded 2-core host was seen to need more than 30 s for it).
  co.ready_timeout = std::chrono::seconds(30) + 2 * startup_allowance +
                     std::chrono::seconds(static_cast<int64_t>(deployment.shard_bytes() >> 23));
  co.progress = [log = ctx.log](std::string_view line) {
    if (line.starts_with("failover")) {
      log->warn("{}", line);
    } else {
      log->info("{}", line);
    }
  };
  co.dead_worker = [&launch] { return launch.Dead(); };
  co.keep_logits = !dump.empty();  // else the tokens alone come back from the sampling chip
  co.stall_timeout = std::chrono::milliseconds(stall_ms >= 0 ? stall_ms : step_timeout_ms / 2);
  co.flight_recorder_file = !flight_file.empty() ? flight_file
                                                 : "/tmp/lockstep-flight-recorder-" +
                                                       std::to_string(::getpid()) + ".json";
  // Failover (worker processes only: a thread cannot be killed and replaced): the plan and
  // topology patched so far; each failover patches them again and deploys the result with its
  // links in a fresh folder (ipc) or port block (tcp), so no socket of the old schedule lingers.
  const fs::path exe = threads ? fs::path() : WorkerExecutable();
  coordinator::Coordinator* coord_ptr = nullptr;
  std::function<void(uint32_t)> spawn = [&](uint32_t chip) {
    std::vector<std::string> wargs =
        WorkerArgs(coord_ptr->address(), chip, launch.dir().string(),
                   heartbeat_ms + step_timeout_ms, 5000 + startup_allowance.count(), *ctx.log);
    if (curve) {
      wargs.push_back("--curve");
      wargs.push_back(key_dir.string());
    }
    launch.SpawnProcess(exe, wargs, static_cast<int32_t>(chip));
  };
  partition::Plan current_plan = plan;
  int failover_count = 0;
  if (!threads) {
    co.redeploy = [&](uint32_t failed) {
      coordinator::PatchedPlan p =
          coordinator::ReplaceChip(current_plan, topo, static_cast<topology::ChipId>(failed));
      current_plan = std::move(p.plan);
      topo = std::move(p.topology);
      ++failover_count;
      const fs::path dir = launch.dir() / ("f" + std::to_string(failover_count));
      fs::create_directories(dir);
      deploy_options.transport.ipc_dir = dir.string();
      const int64_t block = int64_t{16} * topo.chip_count();
      if (deploy_options.transport.tcp_base_port + 2 * block <= 65535) {
        deploy_options.transport.tcp_base_port += static_cast<int>(block);
      }
      return coordinator::MakeDeployment(current_plan, spec, topo, weights, deploy_options);
    };
    co.start_worker = spawn;
    co.stop_worker = [&launch](int64_t pid) { launch.Kill(pid); };
    co.on_step = [&](int64_t index) {
      for (const Injection& inj : injections) {
        if (inj.step != index) continue;
        ctx.log->info("injecting {} into chip {} at step {}",
                      inj.signal == SIGKILL ? "SIGKILL" : "SIGSTOP", inj.chip, index);
        if (!launch.Signal(inj.chip, inj.signal)) {
          ctx.log->warn("--inject: chip {} has no running worker at step {}", inj.chip, index);
        }
      }
    };
  }
  coordinator::Coordinator& coord = launch.StartCoordinator(co);
  coord_ptr = &coord;
  if (threads) {
    transport::Transport& shared = launch.StartSharedTransport(deployment.transport);
    for (const coordinator::ChipDeployment& c : deployment.chips) {
      coordinator::WorkerOptions wo;
      wo.coordinator = coord.address();
      wo.tag = launch.dir().string();
      wo.chip = static_cast<int32_t>(c.chip);
      wo.shared_transport = &shared;
      wo.coordinator_timeout = std::chrono::milliseconds(heartbeat_ms + step_timeout_ms);
      launch.SpawnThread(wo);
    }
  } else {
    for (const coordinator::ChipDeployment& c : deployment.chips) spawn(c.chip);
  }
  ctx.log->info("started {} worker {} ({}); control at {}", deployment.chips.size(),
                threads ? "threads" : "processes", backend, coord.address());
  coord.AwaitWorkers(deployment.chips.size(), std::chrono::seconds(30) + startup_allowance);
  coord.Deploy(deployment);
  const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();

  std::vector<worker::Request> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    requests.push_back({static_cast<uint64_t>(i), prompts[i], max_new, sampling});
  }
  std::vector<worker::Finished> results;
  // No spare left: the run stops, but what it produced is printed (partial) before the error.
  std::optional<Error> failure;
  try {
    results = coord.Generate(requests, [&](uint64_t request, int32_t token, int64_t index) {
      ctx.log->debug("request {} token {}: {}", request, index, token);
    });
  } catch (const Error& e) {
    if (coord.failovers().empty()) throw;
    failure = e;
    results = coord.partial();
  }
  const std::vector<coordinator::FailoverRecord> failovers = coord.failovers();
  const coordinator::RunStats stats = coord.stats();
  launch.Stop();

  const int64_t measured = stats.decode_steps > 0 ? stats.decode_wall_ns / stats.decode_steps : 0;
  const int64_t compute_per_token =
      stats.decode_steps > 0 ? stats.decode_compute_ns / stats.decode_steps : 0;
  const double tokens_per_s =
      stats.wall_ns > 0 ? static_cast<double>(stats.tokens) * 1e9 / stats.wall_ns : 0.0;
  // Throughput of the decode steps: every sequence in flight gains a token per step.
  const double decode_tokens_per_s =
      stats.decode_wall_ns > 0
          ? static_cast<double>(stats.decode_tokens) * 1e9 / stats.decode_wall_ns
          : 0.0;
  ctx.log->info("{} token(s) in {} steps, {:.3f} s ({:.1f} tokens/s); loading took {:.2f} s",
                stats.tokens, stats.steps, stats.wall_ns / 1e9, tokens_per_s, load_s);
  ctx.log->info("decode: {} token(s) in {} steps, {:.1f} tokens/s over the decode steps",
                stats.decode_tokens, stats.decode_steps, decode_tokens_per_s);
  ctx.log->info(
      "decode step: {:.2f} ms measured, of it {:.2f} ms compute (slowest rank per "
      "stage); {} link hops in a row plus the coordinator's 2",
      measured / 1e6, compute_per_token / 1e6, stats.critical_hops);
  const StepBreakdown parts = Breakdown(stats, measured);
  ctx.log->info(
      "decode step of the mean chip: {:.2f} ms compute, {:.2f} reduce, {:.2f} send, {:.2f} "
      "waiting on links (recv {:.2f}, forward {:.2f}), {:.2f} between instructions; {:.2f} ms on "
      "the control plane (Step and result)",
      parts.compute / 1e6, parts.reduce / 1e6, parts.send / 1e6, (parts.recv + parts.forward) / 1e6,
      parts.recv / 1e6, parts.forward / 1e6, parts.between / 1e6, parts.control / 1e6);
  ctx.log->info(
      "shards: {:.1f} MiB shipped in {:.2f} s ({:.1f} MiB/s), workers ready after {:.2f} s",
      stats.shard_bytes / 1048576.0, stats.ship_ns / 1e9, ShipMibPerS(stats),
      stats.deploy_ns / 1e9);
  std::vector<std::string> dumps;
  for (size_t i = 0; i < results.size() && !dump.empty(); ++i) {
    std::string path = dump;
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
  if (ctx.json) {
    nlohmann::json reqs = nlohmann::json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      reqs.push_back({{"prompt", prompts[i]}, {"tokens", results[i].tokens}});
    }
    nlohmann::json stages = nlohmann::json::array();
    for (const partition::StagePlan& s : current_plan.stages) {
      stages.push_back({{"first_layer", s.first_layer},
                        {"end_layer", s.end_layer},
                        {"tp", s.tp},
                        {"chips", s.chips}});
    }
    nlohmann::json j = {{"model", spec.name},
                        {"transport", backend},
                        {"topology", topo.name()},
                        {"chips", deployment.chips.size()},
                        {"stages", stages},
                        {"slots", deployment.slots},
                        {"tokens", results.front().tokens},
                        {"requests", reqs},
                        {"steps", stats.steps},
                        {"predicted_token_latency_ns", deployment.predicted_token_latency_ns},
                        {"measured_token_latency_ns", measured},
                        {"tokens_per_s", tokens_per_s},
                        {"decode_steps", stats.decode_steps},
                        {"decode_tokens", stats.decode_tokens},
                        {"decode_tokens_per_s", decode_tokens_per_s},
                        {"load_seconds", load_s},
                        {"shard_bytes", stats.shard_bytes},
                        {"shard_ship_seconds", stats.ship_ns / 1e9},
                        {"shard_ship_mib_per_s", ShipMibPerS(stats)},
                        {"deploy_seconds", stats.deploy_ns / 1e9},
                        {"measured_compute_ns_per_token", compute_per_token},
                        {"critical_hops", stats.critical_hops},
                        {"decode_breakdown_ns_per_token",
                         {{"compute", parts.compute},
                          {"reduce", parts.reduce},
                          {"send", parts.send},
                          {"recv", parts.recv},
                          {"forward", parts.forward},
                          {"between_instructions", parts.between},
                          {"control", parts.control}}},
                        {"control_hops", 2}};
    if (!dumps.empty()) j["logits_files"] = dumps;
    nlohmann::json fo = nlohmann::json::array();
    for (const coordinator::FailoverRecord& f : failovers) {
      fo.push_back({{"chip", f.chip},
                    {"spare", f.spare},
                    {"cause", f.cause},
                    {"step", f.step},
                    {"detect_ms", f.detect_ms},
                    {"recover_ms", f.recover_ms}});
    }
    j["failovers"] = fo;
    j["partial"] = failure.has_value();
    if (failure) j["error"] = failure->what();
    PrintJson(j);
  } else {
    for (const worker::Finished& f : results) {
      for (size_t i = 0; i < f.tokens.size(); ++i) std::cout << (i ? " " : "") << f.tokens[i];
      std::cout << "\n";
    }
    std::cout << "predicted token latency " << deployment.predicted_token_latency_ns << " ns ("
              << topo.spec_of(0).name << "), measured " << measured << " ns on this host, "
              << tokens_per_s << " tokens/s (" << decode_tokens_per_s
              << " tokens/s over the decode steps)\n";
  }
  if (failure) throw *failure;  // after the partial output: one line on stderr, exit 1
  return 0;
}

}  // namespace lockstep::cli
