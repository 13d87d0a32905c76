// `lockstep deploy --plan PLAN --hosts HOSTS`: maps the plan's chips onto the hosts of a hosts
// file (coordinator::MapToHosts) and prints the mapping; `--dry-run` stops there. Otherwise:
// starts one lockstep-worker per used chip (directly on local hosts, over ssh on the others),
// runs the pre-flight checks before any weights move (routes of the link table; every worker
// registered from the host the mapping expects; every link opens to the expected peer and port),
// ships the shards, waits until every worker is ready, runs the prompts (or reports ready) and
// stops every worker it started — on success and on failure (cli/src/launcher.h).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "command.h"
#include "launcher.h"
#include "lockstep/common/error.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/coordinator/deployment.h"
#include "lockstep/coordinator/host_map.h"
#include "lockstep/coordinator/preflight.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/partition/plan.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/topology/hosts_file.h"
#include "token_list.h"

namespace lockstep::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string ThisHostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

std::vector<std::string> SplitWords(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// execv does not search PATH: resolve a bare command name the way a shell would.
fs::path ResolveExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) return fs::absolute(name);
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path p = fs::path(dir.empty() ? "." : dir) / name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  throw Error(ErrorCode::kNotFound, "'" + name + "' is not an executable on PATH (--ssh-command)");
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

[[noreturn]] void PreflightFailed(const std::string& check, const std::vector<std::string>& p) {
  std::string msg = "pre-flight " + check + " check failed: " + p.front();
  if (p.size() > 1) msg += " (and " + std::to_string(p.size() - 1) + " more)";
  throw Error(ErrorCode::kInvalidInput, msg);
}

int Deploy(const std::vector<std::string>& args, Context& ctx) {
  std::string plan_path, hosts_path, config, weights_path, prompt_text, prompts_file, listen,
      advertise, ssh_command = "ssh", remote_worker, backend = "tcp";
  uint64_t seed = 0;
  int64_t max_new = 16, heartbeat_ms = 3000, step_timeout_ms = 10000, register_ms = 30000,
          link_timeout_ms = 5000;
  int32_t slots = 0;
  int tcp_base_port = 0;
  bool dry_run = false, shared = false;
  po::options_description opts("options");
  opts.add_options()("plan", po::value<std::string>(&plan_path),
                     "the plan file (lockstep plan -o); required")(
      "hosts", po::value<std::string>(&hosts_path), "the hosts file (topology/HOSTS.md); required")(
      "model", po::value<std::string>(&config),
      "config.json or its folder: checked against the plan's model")(
      "weights", po::value<std::string>(&weights_path), "safetensors checkpoint")(
      "seed", po::value<uint64_t>(&seed), "generated weights with this seed instead")(
      "dry-run", po::bool_switch(&dry_run), "print the mapping and stop")(
      "allow-shared-cores", po::bool_switch(&shared),
      "let several chips share a core when a host has fewer cores than chips")(
      "prompt", po::value<std::string>(&prompt_text), "prompt token ids, e.g. 1,2,3")(
      "prompts", po::value<std::string>(&prompts_file), "a file of prompts, one per line")(
      "max-new", po::value<int64_t>(&max_new)->default_value(16), "tokens per prompt")(
      "slots", po::value<int32_t>(&slots)->default_value(0), "pipeline slots; 0 = stages")(
      "transport", po::value<std::string>(&backend)->default_value("tcp"),
      "links: tcp, or ipc when every host is local")(
      "tcp-base-port", po::value<int>(&tcp_base_port)->default_value(0),
      "first tcp link port (0: the hosts file's tcp_base_port, else derived from the pid)")(
      "listen", po::value<std::string>(&listen),
      "control address (default tcp://127.0.0.1:0, or tcp://0.0.0.0:0 with remote hosts)")(
      "advertise", po::value<std::string>(&advertise),
      "the host name or IP remote workers reach the coordinator at (default: this hostname)")(
      "ssh-command", po::value<std::string>(&ssh_command)->default_value("ssh"),
      "how to reach a remote host: run as CMD -p PORT [USER@]ADDRESS lockstep-worker ...")(
      "remote-worker", po::value<std::string>(&remote_worker),
      "lockstep-worker's path on remote hosts (default: the local one's path)")(
      "register-timeout-ms", po::value<int64_t>(&register_ms)->default_value(30000),
      "every worker must register within this")(
      "link-timeout-ms", po::value<int64_t>(&link_timeout_ms)->default_value(5000),
      "pre-flight: every link must answer its hello within this")(
      "heartbeat-timeout-ms", po::value<int64_t>(&heartbeat_ms)->default_value(3000),
      "a worker silent this long fails the run")(
      "step-timeout-ms", po::value<int64_t>(&step_timeout_ms)->default_value(10000),
      "a link transfer waiting this long fails the run");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep deploy --plan PLAN --hosts HOSTS [--model CONFIG] (--weights F | --seed S) "
      "[--prompt 1,2,3 | --prompts FILE] [--max-new N] [--dry-run] [--allow-shared-cores] "
      "[--ssh-command CMD] [--json]";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return 0;
  if (plan_path.empty()) throw UsageError("missing --plan PLAN (see: lockstep deploy --help)");
  if (hosts_path.empty()) throw UsageError("missing --hosts HOSTS (see: lockstep deploy --help)");
  if (!dry_run && weights_path.empty() == !vm.count("seed")) {
    throw UsageError("give exactly one of --weights FILE or --seed S (or --dry-run)");
  }
  if (!prompt_text.empty() && !prompts_file.empty()) {
    throw UsageError("give at most one of --prompt and --prompts");
  }
  if (backend != "tcp" && backend != "ipc") throw UsageError("--transport must be tcp or ipc");
  if (max_new < 0 || slots < 0 || register_ms < 1 || link_timeout_ms < 1 || heartbeat_ms < 1 ||
      step_timeout_ms < 1) {
    throw UsageError("--max-new and --slots must be >= 0, the timeouts >= 1");
  }
  std::vector<std::vector<int32_t>> prompts;
  if (!prompt_text.empty()) prompts.push_back(ParseTokenList(prompt_text, "--prompt"));
  if (!prompts_file.empty()) prompts = ReadPromptsFile(prompts_file);

  const Clock::time_point start = Clock::now();
  nlohmann::json timings = nlohmann::json::object();
  const partition::Plan plan = partition::ReadPlanFile(plan_path);
  const topology::Topology& topo = partition::PlanTopology(plan);
  partition::ModelSpec spec = plan.spec;
  if (!config.empty()) {
    const partition::ModelSpec given = partition::LoadModelSpec(config);
    const std::string diff = partition::ModelSpecDifference(plan.spec, given);
    if (!diff.empty()) {
      throw InvalidInput("plan " + plan_path + " was made for another model than " + config + ": " +
                         diff);
    }
    spec = given;
  }
  const topology::HostsFile hosts = topology::ReadHostsFile(hosts_path);
  const std::string this_host = ThisHostname();

  // Which chips get a worker: every chip with a program in the schedule (forwarders included).
  schedule::ScheduleOptions so;
  so.tokens = 1;
  so.sequences = slots > 0 ? slots : static_cast<int32_t>(plan.stages.size());
  std::vector<coordinator::UsedChip> used;
  for (const schedule::ChipProgram& p : schedule::Compile(plan, spec, topo, so).programs) {
    used.push_back({p.chip, p.stage, p.rank});
  }
  const coordinator::HostMap map =
      coordinator::MapToHosts(used, topo, hosts, {.allow_shared_cores = shared});
  timings["mapping_ms"] = MsSince(start);
  nlohmann::json mapping = {{"hosts_file", hosts.source},
                            {"chips", nlohmann::json::array()},
                            {"spares", nlohmann::json::array()},
                            {"notes", map.notes}};
  for (const auto& c : map.chips) mapping["chips"].push_back(ChipJson(c, hosts));
  for (const auto& c : map.spares) mapping["spares"].push_back(ChipJson(c, hosts));
  nlohmann::json hosts_json = nlohmann::json::array();
  bool all_local = true;
  for (const topology::HostEntry& h : hosts.hosts) {
    const bool local = topology::IsLocalAddress(h.address, this_host);
    all_local &= local;
    hosts_json.push_back({{"name", h.name},
                          {"address", h.address},
                          {"cores", h.cores},
                          {"numa_nodes", h.numa_nodes},
                          {"launch", local ? "local" : "ssh"}});
  }
  mapping["hosts"] = hosts_json;
  if (!ctx.json) PrintMapping(map, hosts, this_host);
  if (dry_run) {
    if (ctx.json) {
      PrintJson({{"plan", plan_path},
                 {"model", spec.name},
                 {"topology", topo.name()},
                 {"dry_run", true},
                 {"mapping", mapping},
                 {"timings", timings}});
    }
    return 0;
  }
  if (backend == "ipc" && !all_local) {
    throw UsageError("--transport ipc needs every host local; " + hosts.source +
                     " has remote hosts (use tcp)");
  }

  // Inputs first: nothing starts before the weights and the plan are known to fit together.
  const Clock::time_point load_start = Clock::now();
  const model::LlamaWeights weights =
      weights_path.empty() ? model::GenerateLlamaWeights(spec, seed)
                           : model::LoadLlamaWeights(model::Checkpoint::Open(weights_path), spec);
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, p.size());
  if (spec.max_position_embeddings > 0 && longest + max_new > spec.max_position_embeddings) {
    throw InvalidInput("a prompt of " + std::to_string(longest) + " tokens + --max-new " +
                       std::to_string(max_new) + " exceeds the model's " +
                       std::to_string(spec.max_position_embeddings) + " positions");
  }
  coordinator::DeployOptions deploy_options;
  deploy_options.slots = slots;
  control::TransportSettings& ts = deploy_options.transport;
  ts.backend = backend;
  ts.step_timeout_ms = step_timeout_ms;
  ts.connect_timeout_ms = link_timeout_ms;
  if (tcp_base_port == 0) {
    for (const topology::HostEntry& h : hosts.hosts) {
      if (h.tcp_base_port == 0) continue;
      if (tcp_base_port != 0 && tcp_base_port != h.tcp_base_port) {
        throw InvalidInput(hosts.source + ":" + std::to_string(h.line) +
                           ": tcp_base_port: " + std::to_string(h.tcp_base_port) +
                           " differs from another host's " + std::to_string(tcp_base_port) +
                           " (a run uses one base: port = base + chip * 16 + port)");
      }
      tcp_base_port = h.tcp_base_port;
    }
  }
  ts.tcp_base_port = tcp_base_port > 0 ? tcp_base_port : DefaultTcpBasePort(topo.chip_count());
  for (const coordinator::ChipOnHost& c : map.chips) {
    const std::string& address = hosts.hosts.at(static_cast<size_t>(c.host)).address;
    const bool local = topology::IsLocalAddress(address, this_host);
    ts.tcp_hosts.emplace_back(static_cast<uint32_t>(c.chip),
                              local && all_local ? "127.0.0.1" : address);
  }
  Launch launch(ctx.log);
  ts.ipc_dir = launch.dir().string();
  coordinator::Deployment deployment =
      coordinator::MakeDeployment(plan, spec, topo, weights, deploy_options);
  for (coordinator::ChipDeployment& c : deployment.chips) {
    c.index = map.Find(static_cast<topology::ChipId>(c.chip))->core;  // pin to the mapped core
  }
  timings["load_ms"] = MsSince(load_start);

  nlohmann::json checks = nlohmann::json::array();
  // Pre-flight 1: the link table holds together (pure; before anything starts).
  Clock::time_point t = Clock::now();
  if (auto p = coordinator::CheckRoutes(deployment, topo); !p.empty()) PreflightFailed("routes", p);
  size_t link_count = 0;
  for (const auto& c : deployment.chips) link_count += c.links.size();
  checks.push_back({{"check", "routes"},
                    {"ok", true},
                    {"ms", MsSince(t)},
                    {"detail", std::to_string(link_count / 2) + " links between " +
                                   std::to_string(deployment.chips.size()) + " chips"}});
  ctx.log->info("pre-flight routes: {} links between {} chips as planned", link_count / 2,
                deployment.chips.size());

  // Launch.
  t = Clock::now();
  const int64_t chips = static_cast<int64_t>(deployment.chips.size());
  coordinator::CoordinatorOptions co;
  if (listen.empty()) listen = all_local ? "tcp://127.0.0.1:0" : "tcp://0.0.0.0:0";
  co.address = listen;
  co.heartbeat_timeout = std::chrono::milliseconds(heartbeat_ms);
  co.ready_timeout = std::chrono::seconds(30) + std::chrono::milliseconds(500 * chips);
  bool settling = false;  // the wait for a stray worker below counts to n + 1: not progress
  co.progress = [log = ctx.log, &settling](std::string_view line) {
    if (!settling) log->info("{}", line);
  };
  co.dead_worker = [&launch] { return launch.Dead(); };
  coordinator::Coordinator& coord = launch.StartCoordinator(co);
  std::string address = coord.address();
  if (const size_t any = address.find("0.0.0.0"); any != std::string::npos) {
    address.replace(any, 7, advertise.empty() ? this_host : advertise);
  }
  const fs::path worker = WorkerExecutable();
  if (remote_worker.empty()) remote_worker = worker.string();
  int remote = 0;
  for (const coordinator::ChipDeployment& c : deployment.chips) {
    const coordinator::ChipOnHost& placed = *map.Find(static_cast<topology::ChipId>(c.chip));
    const topology::HostEntry& h = hosts.hosts.at(static_cast<size_t>(placed.host));
    const std::vector<std::string> wargs =
        WorkerArgs(address, c.chip, "deploy host=" + h.name, heartbeat_ms + step_timeout_ms,
                   register_ms, *ctx.log);
    if (topology::IsLocalAddress(h.address, this_host)) {
      launch.SpawnProcess(worker, wargs, static_cast<int32_t>(c.chip));
      continue;
    }
    std::vector<std::string> ssh = SplitWords(ssh_command);
    if (ssh.empty()) throw UsageError("--ssh-command is empty");
    const fs::path exe = ResolveExecutable(ssh.front());
    ssh.erase(ssh.begin());
    ssh.insert(ssh.end(),
               {"-p", std::to_string(h.ssh_port),
                (h.ssh_user.empty() ? "" : h.ssh_user + "@") + h.address, remote_worker});
    ssh.insert(ssh.end(), wargs.begin(), wargs.end());
    launch.SpawnProcess(exe, ssh, static_cast<int32_t>(c.chip));
    ++remote;
  }
  ctx.log->info("started {} workers ({} over ssh); control at {}", chips, remote, address);
  coord.AwaitWorkers(deployment.chips.size(), std::chrono::milliseconds(register_ms));
  // A stray worker (started by hand for this address) gets a moment to show up, so the check
  // below names it instead of a later, vaguer failure.
  settling = true;
  try {
    coord.AwaitWorkers(deployment.chips.size() + 1, std::chrono::milliseconds(300));
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kUnavailable) throw;
  }
  settling = false;
  timings["register_ms"] = MsSince(t);

  // Pre-flight 2: every worker on the host the mapping expects.
  t = Clock::now();
  if (auto p = coordinator::CheckWorkerHosts(coord.workers(), map, hosts, this_host); !p.empty()) {
    PreflightFailed("hosts", p);
  }
  std::set<std::string> seen_hosts;
  for (const coordinator::WorkerInfo& w : coord.workers()) seen_hosts.insert(w.hostname);
  checks.push_back({{"check", "hosts"},
                    {"ok", true},
                    {"ms", MsSince(t)},
                    {"detail", std::to_string(coord.workers().size()) +
                                   " workers registered from the mapped hosts"}});
  ctx.log->info("pre-flight hosts: {} workers registered, each from its mapped host",
                coord.workers().size());

  // Pre-flight 3: every link opens to the expected peer on the expected port (hellos).
  t = Clock::now();
  if (auto p = coord.CheckLinks(deployment); !p.empty()) PreflightFailed("links", p);
  checks.push_back({{"check", "links"},
                    {"ok", true},
                    {"ms", MsSince(t)},
                    {"detail", std::to_string(link_count / 2) +
                                   " links opened, every peer the expected chip and port"}});
  ctx.log->info("pre-flight links: {} links opened, each to the expected chip and port",
                link_count / 2);

  // Shards, ready.
  t = Clock::now();
  coord.Deploy(deployment);
  timings["ship_and_ready_ms"] = MsSince(t);

  std::vector<worker::Finished> results;
  if (!prompts.empty()) {
    std::vector<worker::Request> requests;
    for (size_t i = 0; i < prompts.size(); ++i) {
      requests.push_back({static_cast<uint64_t>(i), prompts[i], max_new, {}});
    }
    t = Clock::now();
    results = coord.Generate(requests);
    timings["generate_ms"] = MsSince(t);
  } else {
    ctx.log->info("ready: {} workers serving; no prompts given, shutting down", chips);
  }
  launch.Stop();
  timings["total_ms"] = MsSince(start);
  if (ctx.json) {
    nlohmann::json reqs = nlohmann::json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      reqs.push_back({{"prompt", prompts[i]}, {"tokens", results[i].tokens}});
    }
    PrintJson({{"plan", plan_path},
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
    for (const worker::Finished& f : results) {
      for (size_t i = 0; i < f.tokens.size(); ++i) std::cout << (i ? " " : "") << f.tokens[i];
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
