// `lockstep serve`: an OpenAI-compatible HTTP server (server/http_server.h) in front of a run of
// the model (launch/launch.h: a coordinator and one worker per chip — threads for sim and inproc,
// `lockstep-worker` processes for ipc and tcp). Parses the flags, deploys, prints where it
// listens, then serves until SIGINT/SIGTERM: the coordinator's thread runs Generate with the
// server's admission hook, so requests take free pipeline slots as they arrive.
#include <iostream>
#include <optional>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/launch/launch.h"
#include "lockstep/server/serve.h"
#include "run_inputs.h"

namespace lockstep::cli {
namespace {

int Serve(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string config_path, weights_path, tokenizer_path, plan_path, http, backend = "inproc",
                                                                          topo_name = "node", name;
  uint64_t seed = 0;
  int tp = 0, pp = 0, spare_nodes = 1;
  int32_t slots = 0, max_waiting = -1;
  int64_t step_timeout_ms = 10000;
  opts.add_options()("model", po::value<std::string>(&config_path),
                     "config.json, or a folder holding one (required without --plan)")(
      "weights", po::value<std::string>(&weights_path),
      "safetensors checkpoint: a file, an index.json, or a folder")(
      "seed", po::value<uint64_t>(&seed), "use generated weights with this seed instead")(
      "tokenizer", po::value<std::string>(&tokenizer_path),
      "tokenizer.json or a folder holding one (and tokenizer_config.json: EOS, chat template); "
      "default: the --model folder's, if it has one. Without one, prompts are token ids")(
      "http", po::value<std::string>(&http),
      "HOST:PORT to listen on (required; port 0: any free port, printed)")(
      "served-model-name", po::value<std::string>(&name),
      "the model id clients name (default: the model's name)")(
      "transport", po::value<std::string>(&backend)->default_value("inproc"),
      "sim or inproc (workers as threads of this process), ipc or tcp (worker processes)")(
      "topology", po::value<std::string>(&topo_name)->default_value("node"),
      "a topology file, or node, rack or racks:N; with --plan, the plan's own by default")(
      "spare-nodes", po::value<int>(&spare_nodes)->default_value(1),
      "spare nodes per rack (rack and racks:N)")("plan", po::value<std::string>(&plan_path),
                                                 "a plan file (lockstep plan -o); else plan now")(
      "tp", po::value<int>(&tp)->default_value(0), "planning: fixed TP degree (0 = search)")(
      "pp", po::value<int>(&pp)->default_value(0), "planning: fixed stage count (0 = search)")(
      "slots", po::value<int32_t>(&slots)->default_value(0),
      "pipeline slots: requests running at once (0 = the number of stages)")(
      "max-waiting", po::value<int32_t>(&max_waiting)->default_value(-1),
      "requests admitted beyond the slots, waiting for one; more are answered 429 "
      "(-1 = as many as the slots)")("step-timeout-ms",
                                     po::value<int64_t>(&step_timeout_ms)->default_value(10000),
                                     "a link transfer waiting this long fails the run");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep serve --model CONFIG (--weights F | --seed S) [--tokenizer DIR] --http HOST:PORT "
      "[--transport sim|inproc|ipc|tcp] [--plan P | --tp N --pp N] [--slots M] [--max-waiting W] "
      "[--served-model-name NAME] [--json]\n\n"
      "An OpenAI-compatible HTTP server: GET /health, GET /v1/models, GET /metrics (Prometheus), "
      "POST /v1/completions, POST "
      "/v1/chat/completions (\"stream\": true for Server-Sent Events). Requests take free pipeline "
      "slots as they arrive; a full server answers 429. Prints the address it listens on (--json: "
      "one object) and serves until SIGINT/SIGTERM. Greedy requests (\"temperature\": 0) give the "
      "tokens `lockstep run` gives; every choice carries its \"token_ids\".";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return 0;
  if (http.empty()) throw UsageError("missing --http HOST:PORT (see: lockstep serve --help)");
  const auto [host, port] = server::ParseHttpAddress(http);
  const std::vector<std::string> backends = {"sim", "inproc", "ipc", "tcp"};
  if (std::find(backends.begin(), backends.end(), backend) == backends.end()) {
    throw UsageError("--transport must be sim, inproc, ipc or tcp, got '" + backend + "'");
  }
  if (tp < 0 || pp < 0 || slots < 0 || max_waiting < -1 || step_timeout_ms < 1) {
    throw UsageError("--tp, --pp, --slots must be >= 0, --max-waiting >= -1, the timeout >= 1");
  }
  const bool threads = backend == "sim" || backend == "inproc";
  launch::RunConfig config;
  config.inputs = LoadRunInputs(
      {config_path, weights_path, vm.count("seed") ? std::optional<uint64_t>(seed) : std::nullopt,
       vm["topology"].defaulted() ? "" : topo_name, spare_nodes, plan_path, tp, pp});
  config.deploy.slots = slots;
  config.deploy.transport.backend = backend;
  config.deploy.transport.step_timeout_ms = step_timeout_ms;
  config.workers = threads ? launch::Workers::kThreads : launch::Workers::kProcesses;
  config.keep_logits = false;  // tokens alone come back from the sampling chip
  config.failover = !threads;
  config.log = ctx.log;
  const server::ServedModel model =
      server::LoadServedModel(config.inputs.spec, {config_path, tokenizer_path, name});

  launch::Launch launch(std::move(config));
  launch.Start();
  launch.Deploy();
  server::HttpOptions options;
  options.host = host;
  options.port = port;
  options.max_waiting = max_waiting;
  options.log = [&ctx](std::string_view line) { ctx.log->info("{}", line); };
  server::ServeHttp(launch, model, options, [&](const std::string& url, uint16_t bound) {
    if (ctx.json) {
      std::cout << nlohmann::json{{"url", url},
                                  {"port", bound},
                                  {"model", model.card.id},
                                  {"slots", launch.deployment().slots},
                                  {"chips", launch.deployment().chips.size()},
                                  {"transport", backend},
                                  {"tokenizer", model.tokenizer != nullptr}}
                       .dump()
                << std::endl;
    } else {
      std::cout << "listening on " << url << std::endl;
    }
  });
  return 0;
}

}  // namespace

CommandGroup ServeCommand() {
  return {"serve", "an OpenAI-compatible HTTP server for a model (completions, chat, streaming)",
          Serve};
}

}  // namespace lockstep::cli
