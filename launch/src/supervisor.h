// The processes and threads of one run and the run directory they share: what a Launch starts
// and must stop whatever happens. Worker processes are forked and exec'ed (each dies with its
// launcher: PR_SET_PDEATHSIG); threaded workers run worker::RunWorker; a child that died on its
// own is reported by Dead(); Stop (or destruction) waits up to 3 s for the workers to leave (the
// coordinator told them to), kills and reaps the rest and removes the run directory.
//
// SIGINT and SIGTERM: while a Supervisor lives they no longer kill the process outright (which
// left the run directory behind); the next Dead() — polled by the coordinator while it waits —
// throws Interrupted, the Launch is stopped as the exception unwinds, and the front end exits
// 128 + the signal. The previous handlers come back when the Supervisor is destroyed.
//
// Thread-safety: one thread uses a Supervisor; threaded workers only append to its error list.
// Private to the launch library.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lockstep/coordinator/coordinator.h"
#include "lockstep/worker/agent.h"

namespace lockstep::launch {

class Supervisor {
 public:
  // Creates the run directory $TMPDIR/lockstep-run-XXXXXX (TMPDIR unset: /tmp).
  Supervisor();
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  const std::filesystem::path& dir() const { return dir_; }

  // Starts `exe args...` as chip `chip`'s worker; its stdout goes to /dev/null.
  void SpawnProcess(const std::filesystem::path& exe, const std::vector<std::string>& args,
                    int32_t chip);
  // Runs worker::RunWorker(options) on a thread of this process.
  void SpawnThread(const worker::WorkerOptions& options);

  // The peak resident memory (VmHWM, bytes) of every worker process still running, by chip in
  // the order started; 0 for one whose /proc entry cannot be read.
  std::vector<std::pair<int32_t, int64_t>> PeakRss() const;

  // Sends `signal` to chip `chip`'s running worker process (false if none).
  bool Signal(int32_t chip, int signal);
  // SIGKILLs worker `pid` (even a stopped one) and reaps it, so Dead() never reports it; nothing
  // happens for a pid already reaped or not ours.
  void Kill(int64_t pid);
  // A child that exited on its own since the last call, or nullopt. Throws Interrupted after
  // SIGINT / SIGTERM.
  std::optional<coordinator::DeadWorker> Dead();

  // Waits up to 3 s for every worker to leave, kills and reaps the rest, joins the threads.
  // `warn` hears about each worker killed. Idempotent.
  void StopWorkers(const std::function<void(const std::string&)>& warn);
  // Removes the run directory. Idempotent.
  void RemoveDir();

 private:
  struct Child {
    pid_t pid;
    int32_t chip;
    bool reaped;
  };
  std::filesystem::path dir_;
  std::vector<Child> children_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::vector<std::string> thread_errors_;
  struct sigaction old_int_, old_term_;
};

}  // namespace lockstep::launch
