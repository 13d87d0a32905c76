// The processes and threads of one distributed run, and the run directory they share: what
// `lockstep run --transport` starts and must stop whatever happens. `Launch` forks and execs
// `lockstep-worker` processes (each dies with its launcher: PR_SET_PDEATHSIG), runs threaded
// workers, owns the in-process Coordinator and (threads) the shared transport, reports a child
// that died on its own, and on Stop (or destruction) tells every worker to stop, gives them 3 s,
// kills and reaps the rest and removes the run directory. Nothing outlives a Launch.
//
// SIGINT and SIGTERM: while a Launch lives, they no longer kill `lockstep` outright (which
// left the run directory behind); the next liveness poll (Dead(), which the coordinator calls
// while it waits for workers, a deploy or a step) throws Interrupted, the Launch is stopped as the
// exception unwinds (workers told to stop, then killed; directory removed), and main exits
// 128 + the signal (130, 143). The previous handlers come back when the Launch is destroyed.
//
// Thread-safety: one thread uses a Launch; threaded workers only append to its error list.
#pragma once

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/coordinator/coordinator.h"
#include "lockstep/coordinator/worker_agent.h"
#include "lockstep/transport/transport.h"

namespace lockstep::cli {

// A base port for the link sockets of a run: below the kernel's ephemeral range (ports it hands
// out to outgoing connections, which would collide with a listening link), in a block chosen by
// the process id so concurrent runs on one host rarely meet. 16 ports per chip.
int DefaultTcpBasePort(int64_t chips);

// `lockstep-worker` next to this binary, or $LOCKSTEP_WORKER. kNotFound naming the path if absent.
std::filesystem::path WorkerExecutable();

// The arguments of one `lockstep-worker` of a run: its coordinator, tag (what the worker logs
// and `ps` shows: a run's private directory, or the host it was deployed to) and chip, in that
// order (tests find a run's worker by "--tag DIR --chip N "), how
// long it waits for the coordinator before it gives up (`timeout_ms`) and to register first
// (`connect_timeout_ms`), and `--quiet` unless the run logs at debug level or below.
std::vector<std::string> WorkerArgs(const std::string& coordinator, uint32_t chip,
                                    const std::string& tag, int64_t timeout_ms,
                                    int64_t connect_timeout_ms, const spdlog::logger& log);

// SIGINT or SIGTERM arrived during a Launch.
class Interrupted : public std::runtime_error {
 public:
  explicit Interrupted(int signal);
  int signal() const { return signal_; }

 private:
  int signal_;
};

class Launch {
 public:
  // Creates the run directory $TMPDIR/lockstep-run-XXXXXX (TMPDIR unset: /tmp).
  explicit Launch(std::shared_ptr<spdlog::logger> log);
  ~Launch();
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;

  const std::filesystem::path& dir() const { return dir_; }

  // Starts `exe args...` as chip `chip`'s worker; its stdout goes to /dev/null.
  void SpawnProcess(const std::filesystem::path& exe, const std::vector<std::string>& args,
                    int32_t chip);
  // Runs coordinator::RunWorker(options) on a thread of this process.
  void SpawnThread(const coordinator::WorkerOptions& options);

  // Failover and fault injection. Signal: sends `signal` to chip `chip`'s running worker process
  // (false if none). Kill: SIGKILLs worker `pid` (even a stopped one) and reaps it, so Dead()
  // never reports it; nothing happens for a pid already reaped or not ours.
  bool Signal(int32_t chip, int signal);
  void Kill(int64_t pid);

  // A child that exited on its own since the last call (polled by the coordinator while it
  // waits), or nullopt. Throws Interrupted after SIGINT / SIGTERM.
  std::optional<coordinator::CoordinatorOptions::DeadWorker> Dead();

  // The coordinator and (threads) the shared transport live exactly as long as the workers.
  coordinator::Coordinator& StartCoordinator(coordinator::CoordinatorOptions options);
  transport::Transport& StartSharedTransport(const control::TransportSettings& settings);

  // Tells the workers to stop, waits up to 3 s for them, kills the rest, reaps everything and
  // removes the run directory. Idempotent.
  void Stop();

 private:
  struct Child {
    pid_t pid;
    int32_t chip;
    bool reaped;
  };
  std::shared_ptr<spdlog::logger> log_;
  std::filesystem::path dir_;
  std::vector<Child> children_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::vector<std::string> thread_errors_;
  std::unique_ptr<coordinator::Coordinator> coordinator_;
  std::unique_ptr<transport::Transport> shared_;
  struct sigaction old_int_, old_term_;
};

}  // namespace lockstep::cli
