// lockstep-coordinator: plans (or reads --plan), binds the control socket, waits for one
// lockstep-worker per used chip (started by hand, by a script, or on other hosts), deploys
// programs and shards, runs the prompts, prints the tokens and tells every worker to exit.
// With --serve ADDR it then stays up serving clients (lockstep generate --coordinator ADDR,
// coordinator/client.h) until SIGINT/SIGTERM or a client's shutdown request, then tells every
// worker to exit and exits 0. With --http HOST:PORT it serves the OpenAI-compatible HTTP API
// instead (server/serve.h, as `lockstep serve` does over the workers it starts) until
// SIGINT/SIGTERM: new requests are then answered 503, the admitted ones finish, every worker is
// told to exit, and it exits 0.
// Exit status: 0 success, 1 runtime failure (one line on stderr), 2 usage error.
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <csignal>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "lockstep/common/error.h"
#include "lockstep/common/memory.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/coordinator/server.h"
#include "lockstep/launch/launch.h"
#include "lockstep/server/serve.h"
#include "lockstep/topology/named.h"

namespace {

namespace po = boost::program_options;
namespace launch = lockstep::launch;

// A command line that cannot work (exit status 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void OnStopSignal(int sig) { g_stop_signal = sig; }

// The command line, checked (ParseFlags).
struct Flags {
  std::string listen = "tcp://127.0.0.1:7700", config_path, weights_path, topo_name = "node",
              plan_path, backend = "tcp", ipc_dir = "/tmp", prompts_file, serve, curve_dir,
              flight_file, http, tokenizer_path, served_name;
  std::vector<std::string> prompt_texts, tcp_hosts;
  uint64_t seed = 0;
  bool seed_given = false, topology_given = false;
  int64_t max_new = 16, register_ms = 60000, heartbeat_ms = 3000, step_timeout_ms = 10000,
          stall_ms = -1, connect_timeout_ms = 10000;
  int tp = 0, pp = 0, spare_nodes = 1, tcp_base_port = 27000;
  int32_t slots = 0, max_waiting = -1;
  bool json = false;
  std::vector<std::vector<int32_t>> prompts;  // --prompt ones first, then --prompts FILE's
};

// Parses and checks the command line; nullopt when --help was printed.
std::optional<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  po::options_description opts("options");
  opts.add_options()("help,h", "show this help")(
      "listen", po::value<std::string>(&f.listen)->default_value(f.listen),
      "control address workers connect to: tcp://HOST:PORT or ipc://PATH")(
      "model", po::value<std::string>(&f.config_path),
      "config.json or its folder (required without --plan)")(
      "weights", po::value<std::string>(&f.weights_path), "safetensors checkpoint")(
      "seed", po::value<uint64_t>(&f.seed), "generated weights with this seed instead")(
      "topology", po::value<std::string>(&f.topo_name)->default_value("node"),
      lockstep::topology::kTopologyHelp)(
      "spare-nodes", po::value<int>(&f.spare_nodes)->default_value(1), "spare nodes per rack")(
      "plan", po::value<std::string>(&f.plan_path), "a plan file; else plan now")(
      "tp", po::value<int>(&f.tp)->default_value(0), "planning: fixed TP degree")(
      "pp", po::value<int>(&f.pp)->default_value(0), "planning: fixed stage count")(
      "slots", po::value<int32_t>(&f.slots)->default_value(0), "pipeline slots; 0 = stages")(
      "transport", po::value<std::string>(&f.backend)->default_value("tcp"),
      "links between worker processes: ipc (one host) or tcp")(
      "ipc-dir", po::value<std::string>(&f.ipc_dir)->default_value("/tmp"), "ipc socket files")(
      "tcp-base-port", po::value<int>(&f.tcp_base_port)->default_value(27000),
      "tcp: link ports are base + chip * 16 + port")(
      "tcp-host", po::value<std::vector<std::string>>(&f.tcp_hosts),
      "tcp: CHIP=IP, the host of a chip (repeatable; default 127.0.0.1)")(
      "curve", po::value<std::string>(&f.curve_dir),
      "tcp: CURVE on every link with the key pair in DIR (lockstep keys generate -o DIR); only "
      "DIR/lockstep.public is read here, each worker reads the pair (lockstep-worker --curve)")(
      "prompt", po::value<std::vector<std::string>>(&f.prompt_texts),
      "prompt ids 1,2,3 (repeatable)")("prompts", po::value<std::string>(&f.prompts_file),
                                       "a file of prompts, one per line")(
      "max-new", po::value<int64_t>(&f.max_new)->default_value(16), "tokens per prompt")(
      "serve", po::value<std::string>(&f.serve),
      "after deploying (and the prompts, if any), serve clients at this address "
      "(tcp://HOST:PORT or ipc://PATH) until SIGINT/SIGTERM or a client's shutdown request")(
      "http", po::value<std::string>(&f.http),
      "after deploying (and the prompts, if any), serve the OpenAI-compatible HTTP API on "
      "HOST:PORT (port 0: any free port, printed) until SIGINT/SIGTERM: GET /health, /v1/models, "
      "/metrics; POST /v1/completions, /v1/chat/completions (as lockstep serve)")(
      "tokenizer", po::value<std::string>(&f.tokenizer_path),
      "--http: tokenizer.json or a folder holding one (and tokenizer_config.json); default: the "
      "--model folder's, if it has one. Without one, prompts are token ids")(
      "served-model-name", po::value<std::string>(&f.served_name),
      "--http: the model id clients name (default: the model's name)")(
      "max-waiting", po::value<int32_t>(&f.max_waiting)->default_value(-1),
      "--http: requests admitted beyond the slots, waiting for one; more are answered 429 (-1 = "
      "as many as the slots)")("register-timeout-ms",
                               po::value<int64_t>(&f.register_ms)->default_value(60000),
                               "wait this long for the workers to register")(
      "heartbeat-timeout-ms", po::value<int64_t>(&f.heartbeat_ms)->default_value(3000),
      "a worker silent this long fails the run")(
      "connect-timeout-ms", po::value<int64_t>(&f.connect_timeout_ms)->default_value(10000),
      "every link's peer must answer within this when the links open")(
      "step-timeout-ms", po::value<int64_t>(&f.step_timeout_ms)->default_value(10000),
      "a link transfer waiting this long fails the run")(
      "stall-timeout-ms", po::value<int64_t>(&f.stall_ms),
      "no step completing for this long is a stall: report the chips behind and the links they "
      "wait on (default: half the step timeout; 0 = off)")(
      "flight-recorder", po::value<std::string>(&f.flight_file),
      "on a stall, write every worker's last instructions here (JSON; default "
      "/tmp/lockstep-flight-recorder-PID.json)")("json", po::bool_switch(&f.json),
                                                 "print the result as one JSON object");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "usage: lockstep-coordinator --model CONFIG (--weights F | --seed S) "
                 "(--prompt 1,2,3 ... | --prompts FILE) [--listen ADDR] [--topology T] "
                 "[--plan P | --tp N --pp N] [--transport ipc|tcp] [--serve ADDR | --http "
                 "HOST:PORT [--tokenizer DIR]] [--json]\n\n"
                 "Then start one `lockstep-worker --coordinator ADDR` per chip the plan uses.\n\n"
              << opts;
    return std::nullopt;
  }
  if (f.backend != "ipc" && f.backend != "tcp") {
    throw UsageError("--transport must be ipc or tcp");
  }
  if (!f.curve_dir.empty() && f.backend != "tcp") {
    throw UsageError("--curve needs --transport tcp");
  }
  for (const std::string& p : f.prompt_texts) {
    f.prompts.push_back(launch::ParseTokenList(p, "--prompt"));
  }
  if (!f.prompts_file.empty()) {
    for (auto& p : launch::ReadPromptsFile(f.prompts_file)) f.prompts.push_back(std::move(p));
  }
  if (f.prompts.empty() && f.serve.empty() && f.http.empty()) {
    throw UsageError("give --prompt 1,2,3, --prompts FILE, --serve ADDR or --http HOST:PORT");
  }
  if (!f.serve.empty() && !f.http.empty()) {
    throw UsageError("give --serve ADDR or --http HOST:PORT, not both");
  }
  if (f.http.empty() &&
      (vm.count("tokenizer") || vm.count("served-model-name") || !vm["max-waiting"].defaulted())) {
    throw UsageError("--tokenizer, --served-model-name and --max-waiting go with --http");
  }
  if (!f.http.empty())
    lockstep::server::ParseHttpAddress(f.http);  // checked before anything starts
  if (f.max_waiting < -1) throw UsageError("--max-waiting must be >= -1");

  if (f.step_timeout_ms < 1 || f.connect_timeout_ms < 1) {
    throw UsageError("--step-timeout-ms and --connect-timeout-ms must be >= 1");
  }
  f.seed_given = vm.count("seed") > 0;
  f.topology_given = !vm["topology"].defaulted();
  return f;
}

// The run the flags ask for, its workers external (inputs loaded and checked: nothing has
// started yet).
launch::RunConfig MakeRunConfig(const Flags& f) {
  launch::RunConfig config;
  config.inputs = launch::LoadRunInputs(
      {f.config_path, f.weights_path, f.seed_given ? std::optional<uint64_t>(f.seed) : std::nullopt,
       f.topology_given ? f.topo_name : "", f.spare_nodes, f.plan_path, f.tp, f.pp});
  config.deploy.slots = f.slots;
  lockstep::control::TransportSettings& ts = config.deploy.transport;
  ts.backend = f.backend;
  ts.ipc_dir = f.ipc_dir;
  ts.tcp_base_port = f.tcp_base_port;
  ts.connect_timeout_ms = f.connect_timeout_ms;
  ts.step_timeout_ms = f.step_timeout_ms;
  for (const std::string& h : f.tcp_hosts) {
    const size_t eq = h.find('=');
    if (eq == std::string::npos) throw UsageError("--tcp-host wants CHIP=IP, got '" + h + "'");
    ts.tcp_hosts.emplace_back(std::stoul(h.substr(0, eq)), h.substr(eq + 1));
  }
  config.workers = launch::Workers::kExternal;
  config.curve = !f.curve_dir.empty();  // only DIR/lockstep.public is read here
  config.curve_keys = f.curve_dir;
  config.listen = f.listen;
  config.heartbeat_timeout = std::chrono::milliseconds(f.heartbeat_ms);
  config.register_timeout = std::chrono::milliseconds(f.register_ms);
  if (f.stall_ms >= 0) config.stall_timeout = std::chrono::milliseconds(f.stall_ms);
  config.flight_recorder_file = f.flight_file;
  config.log = std::make_shared<spdlog::logger>("lockstep-coordinator",
                                                std::make_shared<spdlog::sinks::stderr_sink_st>());
  config.log->set_pattern("lockstep-coordinator: %v");
  return config;
}

// --serve: serves clients at `address` until SIGINT/SIGTERM or a client's shutdown request.
void Serve(lockstep::coordinator::Coordinator& coordinator, const launch::Launch& run,
           const std::string& address) {
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  lockstep::coordinator::ServeOptions so;
  so.address = address;
  so.vocab_size = run.config().inputs.spec.vocab_size;
  so.stop_requested = [] { return g_stop_signal != 0; };
  so.log = [](std::string_view line) { std::cerr << "lockstep-coordinator: " << line << "\n"; };
  lockstep::coordinator::Server server(coordinator, so);
  std::cerr << "lockstep-coordinator: serving clients at " << server.address() << "\n";
  const lockstep::coordinator::ServeStats served = server.Run();
  std::cerr << "lockstep-coordinator: served " << served.requests << " requests, refused "
            << served.refused << "; stopping the workers\n";
}

// --http: serves the OpenAI-compatible API until SIGINT/SIGTERM, then lets the admitted requests
// finish.
void ServeOpenAi(launch::Launch& run, const lockstep::server::ServedModel& model,
                 const std::string& http, int32_t max_waiting) {
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  const auto [host, port] = lockstep::server::ParseHttpAddress(http);
  lockstep::server::HttpOptions options;
  options.host = host;
  options.port = port;
  options.max_waiting = max_waiting;
  options.stop_requested = [] { return g_stop_signal != 0; };
  options.log = [](std::string_view line) {
    std::cerr << "lockstep-coordinator: " << line << "\n";
  };
  lockstep::server::ServeHttp(run, model, options, [](const std::string& url, uint16_t) {
    std::cerr << "lockstep-coordinator: listening on " << url << std::endl;
  });
  std::cerr << "lockstep-coordinator: stopped serving HTTP (signal " << g_stop_signal
            << "); stopping the workers\n";
}

// Prints each prompt's tokens, a line each (or the JSON object).
void PrintResults(const Flags& f, const std::vector<lockstep::coordinator::Finished>& results,
                  size_t chips, int64_t steps) {
  if (f.json) {
    nlohmann::json reqs = nlohmann::json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      reqs.push_back({{"prompt", f.prompts[i]}, {"tokens", results[i].tokens}});
    }
    std::cout << nlohmann::json{{"requests", reqs}, {"chips", chips}, {"steps", steps}}.dump(2)
              << "\n";
  } else {
    for (const lockstep::coordinator::Finished& r : results) {
      for (size_t i = 0; i < r.tokens.size(); ++i) std::cout << (i ? " " : "") << r.tokens[i];
      std::cout << "\n";
    }
  }
}

int Main(int argc, char** argv) {
  const std::optional<Flags> parsed = ParseFlags(argc, argv);
  if (!parsed) return 0;
  const Flags& f = *parsed;
  launch::RunConfig config = MakeRunConfig(f);
  std::optional<lockstep::server::ServedModel>
      model;  // --http: loaded before any worker is waited for
  if (!f.http.empty()) {
    config.keep_logits = false;  // tokens alone come back from the sampling chip
    model = lockstep::server::LoadServedModel(config.inputs.spec,
                                              {f.config_path, f.tokenizer_path, f.served_name});
  }
  launch::Launch run(std::move(config));
  const lockstep::coordinator::Deployment& deployment = run.deployment();
  lockstep::coordinator::Coordinator& coordinator = run.Start();
  run.Deploy();
  std::vector<lockstep::coordinator::Request> requests;
  for (size_t i = 0; i < f.prompts.size(); ++i) {
    requests.push_back({static_cast<uint64_t>(i), f.prompts[i], f.max_new, {}});
  }
  const std::vector<lockstep::coordinator::Finished> results =
      requests.empty() ? std::vector<lockstep::coordinator::Finished>{}
                       : coordinator.Generate(requests);
  if (!f.serve.empty()) Serve(coordinator, run, f.serve);
  if (model) ServeOpenAi(run, *model, f.http, f.max_waiting);
  const int64_t steps = coordinator.stats().steps;
  run.Stop();
  PrintResults(f, results, deployment.chips.size(), steps);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  lockstep::KeepFreedMemory();  // memory.h: large buffers are reused, not faulted in anew
  try {
    return Main(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "lockstep-coordinator: " << e.what() << "\n";
    return 2;
  } catch (const launch::ConfigError& e) {
    std::cerr << "lockstep-coordinator: " << e.what() << "\n";
    return 2;
  } catch (const launch::Interrupted& e) {
    std::cerr << "lockstep-coordinator: " << e.what() << "\n";
    return 128 + e.signal();
  } catch (const po::error& e) {
    std::cerr << "lockstep-coordinator: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lockstep-coordinator: error: " << e.what() << "\n";
    return 1;
  }
}
