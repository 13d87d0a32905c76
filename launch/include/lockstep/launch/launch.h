// A run of a plan: one coordinator and one worker per chip of the plan's deployment, started,
// watched and stopped as one. `lockstep run --transport`, `lockstep deploy` and
// `lockstep-coordinator` are front ends of this library: they turn flags into a RunConfig and
// print what the run returns; every rule of a run (its timeouts, where the control channel lives,
// how workers are started, failover) is here, once.
//
// Workers, by RunConfig::workers:
//   * kThreads — threads of this process running worker::RunWorker over one shared transport
//     (sim, inproc), on an in-memory control channel (mem://). The in-process runtime.
//   * kProcesses — `lockstep-worker` processes (ipc, tcp): forked on this host, or started through
//   a
//     command prefix on others (`ssh -p PORT USER@ADDR`, RunConfig::hosts); each dies with us.
//   * kExternal — started by someone else (a script, Slurm): the launch only listens and waits.
//
// Lifecycle: the constructor loads nothing and starts nothing; it makes the run directory and the
// deployment (coordinator::MakeDeployment: schedule compiled, shards cut, pins applied). Start()
// binds the control channel, starts the workers and waits until each has registered; Deploy()
// ships programs and shards and waits until every worker is ready; then coordinator() runs
// requests (Generate) or serves clients (coordinator/server.h). Stop() (or the destructor) tells
// every worker to stop, gives them 3 s, kills and reaps the rest and removes the run directory:
// nothing outlives a Launch, on success or failure.
//
// Failover (RunConfig::failover, processes only): a worker found dead or silent is stopped for
// good, the plan and topology are patched with a spare chip in its place
// (coordinator/failover.h), the patched plan is deployed with its links in a fresh ipc folder or
// tcp port block (so no socket of the old schedule lingers), a worker is started for each chip
// new in it, and the coordinator carries on (coordinator.h). plan() and topology() follow.
//
// SIGINT and SIGTERM during a Launch throw Interrupted out of whatever waits (workers stopped,
// run directory removed); front ends exit 128 + the signal.
//
// Thread-safety: one thread uses a Launch.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/coordinator/coordinator.h"
#include "lockstep/coordinator/deployment.h"
#include "lockstep/launch/inputs.h"

namespace lockstep::launch {

using Millis = std::chrono::milliseconds;

// --inject kill:CHIP@STEP / stop:CHIP@STEP: SIGKILL or SIGSTOP to that chip's worker process as
// step STEP starts.
struct Injection {
  int signal = 9;
  int32_t chip = 0;
  int64_t step = 0;
};
// ConfigError naming the text for anything but kill:CHIP@STEP or stop:CHIP@STEP.
Injection ParseInjection(const std::string& text);

enum class Workers { kThreads, kProcesses, kExternal };

// Where one chip's worker process runs (kProcesses).
struct WorkerHost {
  // Empty: this host (fork and exec). Else the command that runs a program there, e.g.
  // {"/usr/bin/ssh", "-p", "22", "user@10.0.0.2"}; the worker's command line follows it.
  std::vector<std::string> command;
  std::string executable;  // lockstep-worker's path on that host; empty: the local one's
  std::string tag;         // shown by the coordinator and `ps`; empty: the run directory
};

struct RunConfig {
  RunInputs inputs;
  // Pipeline slots and the link-layer settings (backend, timeouts, tcp ports and hosts). The
  // ipc folder defaults to the run directory; curve_public_key is filled from the key pair.
  coordinator::DeployOptions deploy;
  Workers workers = Workers::kThreads;
  std::map<uint32_t, WorkerHost> hosts;  // kProcesses, by chip; a chip not listed: this host
  // Pinning: a pin map file (chip -> the CPUs its worker pins to: `lockstep topo host --map T
  // --json`, checked against this host), or chip -> the core index on its host (a host mapping);
  // neither: the run's i-th chip on core i % cores of its host.
  std::string pin_map;
  std::map<uint32_t, int> cores;
  // The control address: empty: mem:// (threads), ipc in the run directory (ipc), tcp on
  // 127.0.0.1, any port (tcp). `advertise` replaces 0.0.0.0 in the address workers are given.
  std::string listen;
  std::string advertise;
  // tcp: CURVE on every link, with the key pair in `curve_keys` (each worker reads it there);
  // empty: a fresh pair in the run directory.
  bool curve = false;
  std::string curve_keys;
  Millis heartbeat_timeout{3000};
  // Every worker must register within this; default 30 s + 250 ms per chip (starting a worker
  // takes a while, more under a sanitizer, and they start one after another).
  std::optional<Millis> register_timeout;
  // After every worker registered, wait this long for one more (started by hand for this address)
  // so that a pre-flight check names it instead of a later, vaguer failure; 0: none.
  Millis settle{0};
  // How long a worker waits for the coordinator's first answer; default 5 s + 250 ms per chip.
  std::optional<Millis> worker_connect_timeout;
  // No step completing for this long is a stall (coordinator.h); default half the step timeout.
  std::optional<Millis> stall_timeout;
  std::string flight_recorder_file;   // default /tmp/lockstep-flight-recorder-PID.json
  bool keep_logits = true;            // else the sampling chip returns tokens alone
  bool failover = false;              // kProcesses only
  std::vector<Injection> injections;  // kProcesses only
  // Logs (progress at info, failover at warn); workers run --quiet unless it logs debug.
  std::shared_ptr<spdlog::logger> log;
};

// Every worker must be ready (shards loaded, links open) within this after the shipping starts:
// 30 s, plus 500 ms per chip, plus 1 s per 8 MiB of shards (a 205M fp32 model on one chip is
// 820 MB; a loaded 2-core host was seen to need more than 30 s for it).
Millis ReadyTimeout(size_t chips, uint64_t shard_bytes);

// SIGINT or SIGTERM arrived during a Launch.
class Interrupted : public std::runtime_error {
 public:
  explicit Interrupted(int signal);
  int signal() const { return signal_; }

 private:
  int signal_;
};

// A base port for the link sockets of a run: below the kernel's ephemeral range, in a block
// chosen by the process id so concurrent runs on one host rarely meet. 16 ports per chip.
int DefaultTcpBasePort(int64_t chips);

// `lockstep-worker` next to this binary, or $LOCKSTEP_WORKER. kNotFound naming the path if absent.
std::filesystem::path WorkerExecutable();

class Launch {
 public:
  // Makes the run directory and the deployment. Throws Error for inputs that cannot be deployed
  // (deployment.h), a pin map naming a CPU this host lacks, unreadable CURVE keys.
  explicit Launch(RunConfig config);
  ~Launch();
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;

  const std::filesystem::path& dir() const;
  const RunConfig& config() const;
  // The deployment of the plan as first deployed.
  const coordinator::Deployment& deployment() const;
  // The plan and topology running now (patched by every failover).
  const partition::Plan& plan() const;
  const topology::Topology& topology() const;

  // Binds the control channel, starts the workers (none for kExternal) and waits until every
  // one has registered. Error(kUnavailable) when they do not within the register timeout.
  coordinator::Coordinator& Start();
  // The address workers were given (0.0.0.0 replaced by `advertise` or this host's name).
  const std::string& worker_address() const;
  // Ships programs and shards, waits until every worker is ready.
  void Deploy();
  // After Start().
  coordinator::Coordinator& coordinator();

  // The peak resident memory (bytes) of each worker process still running, by chip (none for
  // worker threads); read before Stop().
  std::vector<std::pair<int32_t, int64_t>> WorkerPeakRss() const;

  // Tells every worker to stop, waits up to 3 s for them, kills the rest, reaps everything and
  // removes the run directory. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::launch
