// `lockstep deploy --plan PLAN --hosts HOSTS`: maps the plan's chips onto the hosts of a hosts
// file and prints the mapping; `--dry-run` stops there. Otherwise runs the plan there
// (launch/hosts.h: one lockstep-worker per used chip, directly on local hosts, over ssh on the
// others; the pre-flight checks before any weights move), runs the prompts (or reports ready) and
// prints the checks, timings and tokens. Nothing is left running, on success or failure.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/coordinator/host_map.h"
#include "lockstep/launch/hosts.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/hosts_file.h"
#include "run_inputs.h"
#include "token_list.h"

namespace lockstep::cli {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

nlohmann::json ChipJson(const coordinator::ChipOnHost& c, const topology::HostsFile& hosts) {
  const topology::HostEntry& h = hosts.hosts.at(static_cast<size_t>(c.host));
  nlohmann::json j = {{"chip", c.chip},   {"host", h.name}, {"address", h.address},
                      {"numa", c.numa},   {"core", c.core}, {"node", c.node},
                      {"stage", c.stage}, {"rank", c.rank}, {"shared_core", c.shared_core}};
  if (c.spare) {
    j.erase("stage");
    j.erase("rank");
  }
  return j;
}

void PrintMapping(const coordinator::HostMap& map, const topology::HostsFile& hosts,
                  const std::string& this_host) {
  std::cout << "mapping: " << map.chips.size() << " chip(s) on " << hosts.hosts.size()
            << " host(s) of " << hosts.source << "; " << map.spares.size()
            << " spare(s) listed, not started\n";
  for (size_t h = 0; h < hosts.hosts.size(); ++h) {
    const topology::HostEntry& e = hosts.hosts[h];
    int n = 0;
    for (const coordinator::ChipOnHost& c : map.chips) n += c.host == static_cast<int>(h);
    std::cout << "  host " << e.name << " (" << e.address << ", "
              << (topology::IsLocalAddress(e.address, this_host) ? "local" : "ssh") << ", "
              << e.cores << " cores): " << n << " chip(s)\n";
  }
  for (const coordinator::ChipOnHost& c : map.chips) {
    const topology::HostEntry& e = hosts.hosts.at(static_cast<size_t>(c.host));
    std::cout << "  chip " << c.chip << " -> " << e.name << " core " << c.core;
    if (e.numa_nodes > 1) std::cout << " (numa " << c.numa << ")";
    std::cout << ", stage " << c.stage << " rank " << c.rank
              << (c.shared_core ? ", shared core" : "") << "\n";
  }
  for (const coordinator::ChipOnHost& c : map.spares) {
    const topology::HostEntry& e = hosts.hosts.at(static_cast<size_t>(c.host));
    std::cout << "  spare chip " << c.chip << " -> " << e.name << " core " << c.core
              << " (not started)\n";
  }
  for (const std::string& note : map.notes) std::cout << "  note: " << note << "\n";
}

// The command line of `deploy`, checked (ParseDeployFlags).
struct DeployFlags {
  std::string plan_path, hosts_path, config_path, weights_path, prompt_text, prompts_file, listen,
      advertise, ssh_command = "ssh", remote_worker, backend = "tcp", checksums = "auto";
  uint64_t seed = 0;
  bool seed_given = false;
  int64_t max_new = 16, heartbeat_ms = 3000, step_timeout_ms = 10000, register_ms = 30000,
          link_timeout_ms = 5000;
  int32_t slots = 0;
  int tcp_base_port = 0;
  bool dry_run = false, shared = false;
  std::vector<std::vector<int32_t>> prompts;
  transport::LinkChecksums link_checksums{};
};

// Parses and checks `args`; nullopt when --help was printed.
std::optional<DeployFlags> ParseDeployFlags(const std::vector<std::string>& args) {
  DeployFlags f;
  po::options_description opts("options");
  opts.add_options()("plan", po::value<std::string>(&f.plan_path),
                     "the plan file (lockstep plan -o); required")(
      "hosts", po::value<std::string>(&f.hosts_path),
      "the hosts file (topology/HOSTS.md); required")(
      "model", po::value<std::string>(&f.config_path),
      "config.json or its folder: checked against the plan's model")(
      "weights", po::value<std::string>(&f.weights_path), "safetensors checkpoint")(
      "seed", po::value<uint64_t>(&f.seed), "generated weights with this seed instead")(
      "dry-run", po::bool_switch(&f.dry_run), "print the mapping and stop")(
      "allow-shared-cores", po::bool_switch(&f.shared),
      "let several chips share a core when a host has fewer cores than chips")(
      "prompt", po::value<std::string>(&f.prompt_text), "prompt token ids, e.g. 1,2,3")(
      "prompts", po::value<std::string>(&f.prompts_file), "a file of prompts, one per line")(
      "max-new", po::value<int64_t>(&f.max_new)->default_value(16), "tokens per prompt")(
      "slots", po::value<int32_t>(&f.slots)->default_value(0), "pipeline slots; 0 = stages")(
      "transport", po::value<std::string>(&f.backend)->default_value("tcp"),
      "links: tcp, or ipc when every host is local")(
      "tcp-base-port", po::value<int>(&f.tcp_base_port)->default_value(0),
      "first tcp link port (0: the hosts file's tcp_base_port, else derived from the pid)")(
      "link-checksums", po::value<std::string>(&f.checksums)->default_value("auto"),
      "CRC32C on link payloads: auto (ipc unchecked, tcp checked unless CURVE authenticates), "
      "on (every link; unchecked frames refused) or off")(
      "listen", po::value<std::string>(&f.listen),
      "control address (default tcp://127.0.0.1:0, or tcp://0.0.0.0:0 with remote hosts)")(
      "advertise", po::value<std::string>(&f.advertise),
      "the host name or IP remote workers reach the coordinator at (default: this hostname)")(
      "ssh-command", po::value<std::string>(&f.ssh_command)->default_value("ssh"),
      "how to reach a remote host: run as CMD -p PORT [USER@]ADDRESS lockstep-worker ...")(
      "remote-worker", po::value<std::string>(&f.remote_worker),
      "lockstep-worker's path on remote hosts (default: the local one's path)")(
      "register-timeout-ms", po::value<int64_t>(&f.register_ms)->default_value(30000),
      "every worker must register within this")(
      "link-timeout-ms", po::value<int64_t>(&f.link_timeout_ms)->default_value(5000),
      "pre-flight: every link must answer its hello within this")(
      "heartbeat-timeout-ms", po::value<int64_t>(&f.heartbeat_ms)->default_value(3000),
      "a worker silent this long fails the run")(
      "step-timeout-ms", po::value<int64_t>(&f.step_timeout_ms)->default_value(10000),
      "a link transfer waiting this long fails the run");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep deploy --plan PLAN --hosts HOSTS [--model CONFIG] (--weights F | --seed S) "
      "[--prompt 1,2,3 | --prompts FILE] [--max-new N] [--dry-run] [--allow-shared-cores] "
      "[--ssh-command CMD] [--json]";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return std::nullopt;
  f.seed_given = vm.count("seed") > 0;
  if (f.plan_path.empty()) throw UsageError("missing --plan PLAN (see: lockstep deploy --help)");
  if (f.hosts_path.empty()) throw UsageError("missing --hosts HOSTS (see: lockstep deploy --help)");
  if (!f.dry_run && f.weights_path.empty() == !f.seed_given) {
    throw UsageError("give exactly one of --weights FILE or --seed S (or --dry-run)");
  }
  if (!f.prompt_text.empty() && !f.prompts_file.empty()) {
    throw UsageError("give at most one of --prompt and --prompts");
  }
  if (f.backend != "tcp" && f.backend != "ipc") throw UsageError("--transport must be tcp or ipc");
  f.link_checksums = ParseChecksumsFlag(f.checksums);
  if (f.max_new < 0 || f.slots < 0 || f.register_ms < 1 || f.link_timeout_ms < 1 ||
      f.heartbeat_ms < 1 || f.step_timeout_ms < 1) {
    throw UsageError("--max-new and --slots must be >= 0, the timeouts >= 1");
  }
  if (!f.prompt_text.empty()) f.prompts.push_back(ParseTokenList(f.prompt_text, "--prompt"));
  if (!f.prompts_file.empty()) f.prompts = ReadPromptsFile(f.prompts_file);

  return f;
}

int Deploy(const std::vector<std::string>& args, Context& ctx) {
  const std::optional<DeployFlags> parsed = ParseDeployFlags(args);
  if (!parsed) return 0;
  const DeployFlags& f = *parsed;
  const Clock::time_point start = Clock::now();
  nlohmann::json timings = nlohmann::json::object();
  launch::RunConfig config;
  config.inputs.plan = partition::ReadPlanFile(f.plan_path);
  config.inputs.topo = partition::PlanTopology(config.inputs.plan);
  config.inputs.spec = config.inputs.plan.spec;
  if (!f.config_path.empty()) {
    const partition::ModelSpec given = partition::LoadModelSpec(f.config_path);
    const std::string diff = partition::ModelSpecDifference(config.inputs.plan.spec, given);
    if (!diff.empty()) {
      throw InvalidInput("plan " + f.plan_path + " was made for another model than " +
                         f.config_path + ": " + diff);
    }
    config.inputs.spec = given;
  }
  const partition::ModelSpec& spec = config.inputs.spec;
  const topology::Topology& topo = config.inputs.topo;
  const topology::HostsFile hosts = topology::ReadHostsFile(f.hosts_path);
  const launch::HostPlacement placement =
      launch::PlaceOnHosts(config.inputs, f.slots, hosts, f.shared);
  const coordinator::HostMap& map = placement.map;
  timings["mapping_ms"] = MsSince(start);
  nlohmann::json mapping = {{"hosts_file", hosts.source},
                            {"chips", nlohmann::json::array()},
                            {"spares", nlohmann::json::array()},
                            {"notes", map.notes}};
  for (const auto& c : map.chips) mapping["chips"].push_back(ChipJson(c, hosts));
  for (const auto& c : map.spares) mapping["spares"].push_back(ChipJson(c, hosts));
  nlohmann::json hosts_json = nlohmann::json::array();
  for (const topology::HostEntry& h : hosts.hosts) {
    const bool local = topology::IsLocalAddress(h.address, placement.this_host);
    hosts_json.push_back({{"name", h.name},
                          {"address", h.address},
                          {"cores", h.cores},
                          {"numa_nodes", h.numa_nodes},
                          {"launch", local ? "local" : "ssh"}});
  }
  mapping["hosts"] = hosts_json;
  if (!ctx.json) PrintMapping(map, hosts, placement.this_host);
  if (f.dry_run) {
    if (ctx.json) {
      PrintJson({{"plan", f.plan_path},
                 {"model", spec.name},
                 {"topology", topo.name()},
                 {"dry_run", true},
                 {"mapping", mapping},
                 {"timings", timings}});
    }
    return 0;
  }
  if (f.backend == "ipc" && !placement.all_local) {
    throw UsageError("--transport ipc needs every host local; " + hosts.source +
                     " has remote hosts (use tcp)");
  }

  // Inputs first: nothing starts before the weights and the plan are known to fit together.
  const Clock::time_point load_start = Clock::now();
  config.inputs.weights = {};
  if (f.weights_path.empty()) {
    config.inputs.weights.seed = f.seed;
  } else {
    config.inputs.weights.checkpoint = std::filesystem::absolute(f.weights_path).string();
    model::CheckLlamaWeights(model::Checkpoint::Open(f.weights_path), spec);
  }
  launch::CheckPromptsFit(spec, f.prompts, f.max_new);
  config.deploy.slots = f.slots;
  config.deploy.transport.backend = f.backend;
  config.deploy.transport.step_timeout_ms = f.step_timeout_ms;
  config.deploy.transport.connect_timeout_ms = f.link_timeout_ms;
  config.deploy.transport.checksums = f.link_checksums;
  config.deploy.transport.tcp_base_port = f.tcp_base_port;  // 0: the hosts file's, or the pid's
  launch::ApplyPlacement(placement, hosts, {f.ssh_command, f.remote_worker}, config);
  config.listen = !f.listen.empty()     ? f.listen
                  : placement.all_local ? "tcp://127.0.0.1:0"
                                        : "tcp://0.0.0.0:0";
  config.advertise = f.advertise;
  config.heartbeat_timeout = std::chrono::milliseconds(f.heartbeat_ms);
  config.register_timeout = std::chrono::milliseconds(f.register_ms);
  config.worker_connect_timeout = std::chrono::milliseconds(f.register_ms);
  config.settle = std::chrono::milliseconds(300);
  config.log = ctx.log;
  launch::Launch launch(std::move(config));
  timings["load_ms"] = MsSince(load_start);
  const launch::Preflight preflight = launch::StartWithPreflight(launch, placement, hosts);
  timings["register_ms"] = preflight.register_ms;
  nlohmann::json checks = nlohmann::json::array();
  for (const launch::PreflightCheck& c : preflight.checks) {
    checks.push_back({{"check", c.check}, {"ok", true}, {"ms", c.ms}, {"detail", c.detail}});
  }

  // Shards, ready.
  Clock::time_point t = Clock::now();
  launch.Deploy();
  timings["ship_and_ready_ms"] = MsSince(t);
  const size_t chips = launch.deployment().chips.size();

  std::vector<coordinator::Finished> results;
  if (!f.prompts.empty()) {
    std::vector<coordinator::Request> requests;
    for (size_t i = 0; i < f.prompts.size(); ++i) {
      requests.push_back({static_cast<uint64_t>(i), f.prompts[i], f.max_new, {}});
    }
    t = Clock::now();
    results = launch.coordinator().Generate(requests);
    timings["generate_ms"] = MsSince(t);
  } else {
    ctx.log->info("ready: {} workers serving; no prompts given, shutting down", chips);
  }
  launch.Stop();
  timings["total_ms"] = MsSince(start);
  if (ctx.json) {
    nlohmann::json reqs = nlohmann::json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      reqs.push_back({{"prompt", f.prompts[i]}, {"tokens", results[i].tokens}});
    }
    PrintJson({{"plan", f.plan_path},
               {"model", spec.name},
               {"topology", topo.name()},
               {"dry_run", false},
               {"mapping", mapping},
               {"preflight", checks},
               {"ready", true},
               {"requests", reqs},
               {"timings", timings}});
  } else {
    std::cout << "ready: " << chips << " workers\n";
    for (const coordinator::Finished& r : results) {
      for (size_t i = 0; i < r.tokens.size(); ++i) std::cout << (i ? " " : "") << r.tokens[i];
      std::cout << "\n";
    }
  }
  return 0;
}

}  // namespace

CommandGroup DeployCommand() {
  return {"deploy", "map a plan onto the hosts of a hosts file, check, launch and serve", Deploy};
}

}  // namespace lockstep::cli
