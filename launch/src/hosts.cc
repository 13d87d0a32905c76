#include "lockstep/launch/hosts.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <sstream>

#include "lockstep/coordinator/preflight.h"
#include "lockstep/schedule/schedule.h"

namespace lockstep::launch {
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

[[noreturn]] void Failed(const std::string& check, const std::vector<std::string>& p) {
  std::string msg = "pre-flight " + check + " check failed: " + p.front();
  if (p.size() > 1) msg += " (and " + std::to_string(p.size() - 1) + " more)";
  throw Error(ErrorCode::kInvalidInput, msg);
}

}  // namespace

HostPlacement PlaceOnHosts(const RunInputs& inputs, int32_t slots, const topology::HostsFile& hosts,
                           bool allow_shared_cores) {
  schedule::ScheduleOptions so;
  so.tokens = 1;
  so.sequences = slots > 0 ? slots : static_cast<int32_t>(inputs.plan.stages.size());
  std::vector<coordinator::UsedChip> used;
  for (const schedule::ChipProgram& p :
       schedule::Compile(inputs.plan, inputs.spec, inputs.topo, so).programs) {
    used.push_back({p.chip, p.stage, p.rank});
  }
  HostPlacement out;
  out.map =
      coordinator::MapToHosts(used, inputs.topo, hosts, {.allow_shared_cores = allow_shared_cores});
  out.this_host = ThisHostname();
  for (const topology::HostEntry& h : hosts.hosts) {
    out.all_local &= topology::IsLocalAddress(h.address, out.this_host);
  }
  return out;
}

void ApplyPlacement(const HostPlacement& placement, const topology::HostsFile& hosts,
                    const HostLaunchOptions& options, RunConfig& config) {
  control::TransportSettings& ts = config.deploy.transport;
  if (ts.tcp_base_port == 0) {
    for (const topology::HostEntry& h : hosts.hosts) {
      if (h.tcp_base_port == 0) continue;
      if (ts.tcp_base_port != 0 && ts.tcp_base_port != h.tcp_base_port) {
        throw InvalidInput(hosts.source + ":" + std::to_string(h.line) +
                           ": tcp_base_port: " + std::to_string(h.tcp_base_port) +
                           " differs from another host's " + std::to_string(ts.tcp_base_port) +
                           " (a run uses one base: port = base + chip * 16 + port)");
      }
      ts.tcp_base_port = h.tcp_base_port;
    }
  }
  config.workers = Workers::kProcesses;
  for (const coordinator::ChipOnHost& c : placement.map.chips) {
    const topology::HostEntry& h = hosts.hosts.at(static_cast<size_t>(c.host));
    const bool local = topology::IsLocalAddress(h.address, placement.this_host);
    ts.tcp_hosts.emplace_back(static_cast<uint32_t>(c.chip),
                              local && placement.all_local ? "127.0.0.1" : h.address);
    config.cores[static_cast<uint32_t>(c.chip)] = c.core;  // pin to the mapped core
    WorkerHost& worker = config.hosts[static_cast<uint32_t>(c.chip)];
    worker.tag = "deploy host=" + h.name;
    if (local) continue;
    std::vector<std::string> ssh = SplitWords(options.ssh_command);
    if (ssh.empty()) throw ConfigError("--ssh-command is empty");
    worker.command = {ResolveExecutable(ssh.front()).string()};
    worker.command.insert(worker.command.end(), ssh.begin() + 1, ssh.end());
    worker.command.insert(worker.command.end(),
                          {"-p", std::to_string(h.ssh_port),
                           (h.ssh_user.empty() ? "" : h.ssh_user + "@") + h.address});
    worker.executable = options.remote_worker;
  }
}

Preflight StartWithPreflight(Launch& launch, const HostPlacement& placement,
                             const topology::HostsFile& hosts) {
  Preflight out;
  const coordinator::Deployment& d = launch.deployment();
  const std::shared_ptr<spdlog::logger>& log = launch.config().log;
  size_t links = 0;
  for (const coordinator::ChipDeployment& c : d.chips) links += c.links.size();
  links /= 2;
  const std::string between =
      std::to_string(links) + " links between " + std::to_string(d.chips.size()) + " chips";

  // Routes: the link table holds together (pure; before anything starts).
  Clock::time_point t = Clock::now();
  if (auto p = coordinator::CheckRoutes(d, launch.topology()); !p.empty()) Failed("routes", p);
  out.checks.push_back({"routes", MsSince(t), between});
  log->info("pre-flight routes: {} as planned", between);

  t = Clock::now();
  coordinator::Coordinator& coord = launch.Start();
  out.register_ms = MsSince(t);

  // Hosts: every worker on the host the mapping expects.
  t = Clock::now();
  if (auto p =
          coordinator::CheckWorkerHosts(coord.workers(), placement.map, hosts, placement.this_host);
      !p.empty()) {
    Failed("hosts", p);
  }
  out.checks.push_back(
      {"hosts", MsSince(t),
       std::to_string(coord.workers().size()) + " workers registered from the mapped hosts"});
  log->info("pre-flight hosts: {} workers registered, each from its mapped host",
            coord.workers().size());

  // Links: every link opens to the expected peer on the expected port (hellos).
  t = Clock::now();
  if (auto p = coord.CheckLinks(d); !p.empty()) Failed("links", p);
  out.checks.push_back(
      {"links", MsSince(t),
       std::to_string(links) + " links opened, every peer the expected chip and port"});
  log->info("pre-flight links: {} links opened, each to the expected chip and port", links);
  return out;
}

}  // namespace lockstep::launch
