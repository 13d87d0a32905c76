#include "lockstep/launch/launch.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <memory>

#include "lockstep/control/channel.h"
#include "lockstep/coordinator/failover.h"
#include "lockstep/topology/host.h"
#include "lockstep/transport/curve.h"
#include "lockstep/transport/transport.h"
#include "lockstep/worker/agent.h"
#include "pin_map.h"
#include "supervisor.h"

namespace lockstep::launch {

namespace fs = std::filesystem;

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
    throw ConfigError("--inject takes kill:CHIP@STEP or stop:CHIP@STEP (e.g. kill:5@3), got '" +
                      text + "'");
  }
  return inj;
}

Millis ReadyTimeout(size_t chips, uint64_t shard_bytes) {
  return std::chrono::seconds(30) + Millis(500 * static_cast<int64_t>(chips)) +
         std::chrono::seconds(static_cast<int64_t>(shard_bytes >> 23));
}

int DefaultTcpBasePort(int64_t chips) {
  int ephemeral_low = 32768;
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  if (int low = 0; range >> low && low > 11024) ephemeral_low = low;
  const int64_t span = std::max<int64_t>(chips, 1) * 16;
  const int64_t low_port = 10000;
  const int64_t blocks = std::max<int64_t>(1, (ephemeral_low - low_port) / span);
  return static_cast<int>(low_port + (getpid() % blocks) * span);
}

fs::path WorkerExecutable() {
  if (const char* env = std::getenv("LOCKSTEP_WORKER")) return env;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const fs::path worker = (ec ? fs::path(".") : self.parent_path()) / "lockstep-worker";
  if (!fs::exists(worker)) {
    throw Error(ErrorCode::kNotFound,
                "lockstep-worker not found next to lockstep (" + worker.string() +
                    "); build the lockstep-worker target or set LOCKSTEP_WORKER");
  }
  return worker;
}

namespace {

std::string ThisHostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

// The default start-up allowance: starting a worker process takes a while (fork, exec, loading;
// much longer under a sanitizer), and they start one after another.
Millis StartupAllowance(size_t chips) { return Millis(250 * static_cast<int64_t>(chips)); }

}  // namespace

// The launch is the coordinator's supervisor: it knows which worker processes died, starts and
// stops them for a failover, and injects the faults it was asked to.
struct Launch::Impl : coordinator::WorkerSupervisor {
  explicit Impl(RunConfig c) : config(std::move(c)) {}

  RunConfig config;
  Supervisor supervisor;
  coordinator::DeployOptions deploy;  // as last deployed (failover moves its sockets)
  coordinator::Deployment deployment;
  partition::Plan plan;
  topology::Topology topo;
  fs::path key_dir;  // CURVE: where workers read the run's key pair
  int failovers = 0;
  std::unique_ptr<control::InMemoryNetwork> network;  // threads: the control channel's medium
  std::unique_ptr<transport::Transport> shared;       // threads: every chip's links
  std::unique_ptr<coordinator::Coordinator> coordinator;
  std::string address;  // what workers are given
  bool quiet = false;   // the coordinator's progress lines are not the run's (settling)
  fs::path worker_exe;

  size_t chips() const { return deployment.chips.size(); }
  Millis connect_timeout() const {
    return config.worker_connect_timeout.value_or(std::chrono::seconds(5) +
                                                  StartupAllowance(chips()));
  }
  int64_t worker_timeout_ms() const {
    return config.heartbeat_timeout.count() + deploy.transport.step_timeout_ms;
  }

  // The arguments of chip `chip`'s lockstep-worker: its coordinator, tag and chip, in that order
  // (tests find a run's worker by "--tag DIR --chip N "), its timeouts, --quiet unless the run
  // logs at debug level, and where the run's CURVE keys are.
  std::vector<std::string> WorkerArgs(uint32_t chip, const std::string& tag) const {
    std::vector<std::string> args = {"--coordinator",
                                     address,
                                     "--tag",
                                     tag,
                                     "--chip",
                                     std::to_string(chip),
                                     "--timeout-ms",
                                     std::to_string(worker_timeout_ms()),
                                     "--connect-timeout-ms",
                                     std::to_string(connect_timeout().count())};
    if (config.log->level() > spdlog::level::debug) args.push_back("--quiet");
    if (config.curve) {
      args.push_back("--curve");
      args.push_back(key_dir.string());
    }
    return args;
  }

  // A worker of this host reads its own shard from the checkpoint (or generates it); workers not
  // on this host (over ssh, or started by someone else) may not see the file: their shards are
  // cut here, one at a time, and shipped. Weights given in memory are cut and shipped for all.
  coordinator::Deployment MakeDeployment(const partition::Plan& p, const topology::Topology& t,
                                         const coordinator::DeployOptions& o) const {
    const RunInputs& in = config.inputs;
    if (in.in_memory) return coordinator::MakeDeployment(p, in.spec, t, *in.in_memory, o);
    coordinator::Deployment d = coordinator::MakeDeployment(p, in.spec, t, in.weights, o);
    for (coordinator::ChipDeployment& chip : d.chips) {
      const auto h = config.hosts.find(chip.chip);
      const bool elsewhere = config.workers == Workers::kExternal ||
                             (h != config.hosts.end() && !h->second.command.empty());
      if (elsewhere) coordinator::MaterializeShard(in.spec, chip);
    }
    return d;
  }

  void StartProcess(uint32_t chip) {
    auto place = config.hosts.find(chip);
    const WorkerHost here;
    const WorkerHost& host = place != config.hosts.end() ? place->second : here;
    std::vector<std::string> args =
        WorkerArgs(chip, host.tag.empty() ? supervisor.dir().string() : host.tag);
    if (host.command.empty()) {
      supervisor.SpawnProcess(worker_exe, args, static_cast<int32_t>(chip));
      return;
    }
    std::vector<std::string> remote(host.command.begin() + 1, host.command.end());
    remote.push_back(host.executable.empty() ? worker_exe.string() : host.executable);
    remote.insert(remote.end(), args.begin(), args.end());
    supervisor.SpawnProcess(host.command.front(), remote, static_cast<int32_t>(chip));
  }

  void StartThreads() {
    shared = transport::CreateTransport(control::TransportOptionsFor(deployment.transport));
    for (const coordinator::ChipDeployment& c : deployment.chips) {
      worker::WorkerOptions wo;
      wo.coordinator = address;
      wo.channel.network = network.get();
      wo.tag = supervisor.dir().string();
      wo.chip = static_cast<int32_t>(c.chip);
      wo.shared_transport = shared.get();
      wo.coordinator_timeout = Millis(worker_timeout_ms());
      supervisor.SpawnThread(wo);
    }
  }

  // --- coordinator::WorkerSupervisor ---
  std::optional<coordinator::DeadWorker> Dead() override { return supervisor.Dead(); }

  void BeforeStep(int64_t index) override {
    for (const Injection& inj : config.injections) {
      if (inj.step != index) continue;
      config.log->info("injecting {} into chip {} at step {}",
                       inj.signal == SIGKILL ? "SIGKILL" : "SIGSTOP", inj.chip, index);
      if (!supervisor.Signal(inj.chip, inj.signal)) {
        config.log->warn("--inject: chip {} has no running worker at step {}", inj.chip, index);
      }
    }
  }

  bool CanFailOver() const override {
    return config.failover && config.workers == Workers::kProcesses;
  }

  // The plan and topology patched so far, patched again and deployed with the links in a fresh
  // folder (ipc) or port block (tcp), so no socket of the old schedule lingers.
  coordinator::Deployment Redeploy(uint32_t failed) override {
    coordinator::PatchedPlan p =
        coordinator::ReplaceChip(plan, topo, static_cast<topology::ChipId>(failed));
    plan = std::move(p.plan);
    topo = std::move(p.topology);
    ++failovers;
    const fs::path folder = supervisor.dir() / ("f" + std::to_string(failovers));
    fs::create_directories(folder);
    deploy.transport.ipc_dir = folder.string();
    const int64_t block = int64_t{16} * topo.chip_count();
    if (deploy.transport.tcp_base_port + 2 * block <= 65535) {
      deploy.transport.tcp_base_port += static_cast<int>(block);
    }
    return MakeDeployment(plan, topo, deploy);
  }

  void StartWorker(uint32_t chip) override { StartProcess(chip); }
  void StopWorker(int64_t pid) override { supervisor.Kill(pid); }
};

Launch::Launch(RunConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {
  Impl& im = *impl_;
  RunConfig& c = im.config;
  if (!c.log) throw Error(ErrorCode::kInternal, "launch: RunConfig::log is required");
  im.plan = c.inputs.plan;
  im.topo = c.inputs.topo;
  im.deploy = c.deploy;
  control::TransportSettings& ts = im.deploy.transport;
  if (c.workers == Workers::kThreads && ts.backend != "sim" && ts.backend != "inproc") {
    throw ConfigError("worker threads run over sim or inproc, not " + ts.backend);
  }
  if (c.workers != Workers::kThreads && ts.backend != "ipc" && ts.backend != "tcp") {
    throw ConfigError("worker processes run over ipc or tcp, not " + ts.backend);
  }
  if (c.workers != Workers::kExternal) ts.ipc_dir = im.supervisor.dir().string();
  if (ts.tcp_base_port == 0) ts.tcp_base_port = DefaultTcpBasePort(im.topo.chip_count());
  // CURVE: the run's key pair lives in files each worker reads itself (only the public key goes
  // over the control channel); a fresh pair goes to the run directory, removed with it.
  if (c.curve) {
    if (ts.backend != "tcp") throw ConfigError("CURVE needs the tcp transport");
    im.key_dir = c.curve_keys;
    if (im.key_dir.empty()) {
      im.key_dir = im.supervisor.dir() / "keys";
      transport::WriteCurveKeyPair(transport::GenerateCurveKeyPair(), im.key_dir);
    }
    ts.curve = true;
    ts.curve_public_key = c.workers == Workers::kExternal
                              ? transport::ReadCurveKey(im.key_dir / "lockstep.public")
                              : transport::ReadCurveKeyPair(im.key_dir).public_key;
  }
  im.deployment = im.MakeDeployment(im.plan, im.topo, im.deploy);
  if (!c.pin_map.empty()) {
    ApplyPinMap(ReadPinMap(c.pin_map), c.pin_map, topology::DiscoverHost(), im.deployment);
  }
  for (coordinator::ChipDeployment& chip : im.deployment.chips) {
    if (auto it = c.cores.find(chip.chip); it != c.cores.end()) chip.index = it->second;
  }
  if (c.workers == Workers::kProcesses) im.worker_exe = WorkerExecutable();
}

Launch::~Launch() { Stop(); }

const fs::path& Launch::dir() const { return impl_->supervisor.dir(); }
const RunConfig& Launch::config() const { return impl_->config; }
const coordinator::Deployment& Launch::deployment() const { return impl_->deployment; }
const partition::Plan& Launch::plan() const { return impl_->plan; }
const topology::Topology& Launch::topology() const { return impl_->topo; }
const std::string& Launch::worker_address() const { return impl_->address; }

coordinator::Coordinator& Launch::coordinator() {
  if (!impl_->coordinator)
    throw Error(ErrorCode::kInternal, "launch: coordinator() before Start()");
  return *impl_->coordinator;
}

coordinator::Coordinator& Launch::Start() {
  Impl& im = *impl_;
  const RunConfig& c = im.config;
  const std::string& backend = im.deploy.transport.backend;
  coordinator::CoordinatorOptions co;
  co.address = c.listen;
  if (co.address.empty()) {
    if (c.workers == Workers::kThreads) {
      co.address = "mem://run";
    } else if (backend == "ipc") {
      co.address = "ipc://" + (im.supervisor.dir() / "control").string();
    } else {
      co.address = "tcp://127.0.0.1:0";
    }
  }
  if (co.address.rfind("mem://", 0) == 0) {
    im.network = std::make_unique<control::InMemoryNetwork>();
    co.control.network = im.network.get();
  }
  co.heartbeat_timeout = c.heartbeat_timeout;
  co.ready_timeout = ReadyTimeout(im.chips(), im.deployment.shard_bytes());
  co.progress = [log = c.log, &quiet = im.quiet](std::string_view line) {
    if (quiet) return;
    if (line.starts_with("failover")) {
      log->warn("{}", line);
    } else {
      log->info("{}", line);
    }
  };
  co.supervisor = &im;
  co.keep_logits = c.keep_logits;
  co.stall_timeout = c.stall_timeout.value_or(Millis(im.deploy.transport.step_timeout_ms / 2));
  co.flight_recorder_file =
      !c.flight_recorder_file.empty()
          ? c.flight_recorder_file
          : "/tmp/lockstep-flight-recorder-" + std::to_string(::getpid()) + ".json";
  im.coordinator = std::make_unique<coordinator::Coordinator>(std::move(co));
  im.address = im.coordinator->address();
  if (const size_t any = im.address.find("0.0.0.0"); any != std::string::npos) {
    im.address.replace(any, 7, c.advertise.empty() ? ThisHostname() : c.advertise);
  }
  const Millis register_timeout =
      c.register_timeout.value_or(std::chrono::seconds(30) + StartupAllowance(im.chips()));
  switch (c.workers) {
    case Workers::kThreads:
      im.StartThreads();
      c.log->info("started {} worker threads ({}); control at {}", im.chips(), backend, im.address);
      break;
    case Workers::kProcesses: {
      size_t remote = 0;
      for (const coordinator::ChipDeployment& chip : im.deployment.chips) {
        im.StartProcess(chip.chip);
        auto h = c.hosts.find(chip.chip);
        remote += h != c.hosts.end() && !h->second.command.empty();
      }
      c.log->info("started {} worker processes ({}{}); control at {}", im.chips(), backend,
                  remote > 0 ? ", " + std::to_string(remote) + " over ssh" : "", im.address);
      break;
    }
    case Workers::kExternal:
      c.log->info("waiting for {} workers: lockstep-worker --coordinator {}", im.chips(),
                  im.address);
      break;
  }
  im.coordinator->AwaitWorkers(im.chips(), register_timeout);
  if (c.settle > Millis(0)) {
    im.quiet = true;  // the wait below counts to n + 1: not progress
    try {
      im.coordinator->AwaitWorkers(im.chips() + 1, c.settle);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kUnavailable) throw;
    }
    im.quiet = false;
  }
  return *im.coordinator;
}

void Launch::Deploy() { coordinator().Deploy(impl_->deployment); }

std::vector<std::pair<int32_t, int64_t>> Launch::WorkerPeakRss() const {
  return impl_->supervisor.PeakRss();
}

void Launch::Stop() {
  Impl& im = *impl_;
  if (im.coordinator) im.coordinator->Shutdown();
  im.supervisor.StopWorkers([&](const std::string& line) { im.config.log->warn("{}", line); });
  im.coordinator.reset();  // flushes the shutdown messages (bounded linger)
  im.shared.reset();
  im.supervisor.RemoveDir();
}

}  // namespace lockstep::launch
