#include "supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>

#include "lockstep/common/error.h"
#include "lockstep/launch/launch.h"

namespace lockstep::launch {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

volatile sig_atomic_t g_signal = 0;
extern "C" void OnSignal(int sig) { g_signal = sig; }

}  // namespace

Interrupted::Interrupted(int signal)
    : std::runtime_error("interrupted by signal " + std::to_string(signal) +
                         "; workers stopped, run directory removed"),
      signal_(signal) {}

Supervisor::Supervisor() {
  const char* tmp = std::getenv("TMPDIR");
  const std::string parent = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  std::string dir = parent + "/lockstep-run-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) {
    throw Error(ErrorCode::kUnavailable, "cannot create a run directory under " + parent +
                                             " (TMPDIR); it must exist and be writable");
  }
  dir_ = dir;
  g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
}

Supervisor::~Supervisor() {
  StopWorkers({});
  RemoveDir();
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

void Supervisor::SpawnProcess(const fs::path& exe, const std::vector<std::string>& args,
                              int32_t chip) {
  std::vector<std::string> all = {exe.string()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw Error(ErrorCode::kUnavailable, "fork failed for chip " + std::to_string(chip));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec. A worker dies with its launcher.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, STDOUT_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  children_.push_back({pid, chip, false});
}

void Supervisor::SpawnThread(const worker::WorkerOptions& options) {
  threads_.emplace_back([options, this] {
    try {
      worker::RunWorker(options);
    } catch (const std::exception& e) {
      // The coordinator gets the same report over the control socket; keep it for the log.
      std::lock_guard lock(mutex_);
      thread_errors_.push_back(e.what());
    }
  });
}

std::vector<std::pair<int32_t, int64_t>> Supervisor::PeakRss() const {
  std::vector<std::pair<int32_t, int64_t>> out;
  for (const Child& c : children_) {
    if (c.reaped) continue;
    int64_t bytes = 0;
    std::ifstream status("/proc/" + std::to_string(c.pid) + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmHWM:", 0) == 0) bytes = std::strtoll(line.c_str() + 6, nullptr, 10) * 1024;
    }
    out.emplace_back(c.chip, bytes);
  }
  return out;
}

bool Supervisor::Signal(int32_t chip, int signal) {
  for (auto c = children_.rbegin(); c != children_.rend(); ++c) {
    if (c->chip == chip && !c->reaped) return kill(c->pid, signal) == 0;
  }
  return false;
}

void Supervisor::Kill(int64_t pid) {
  for (Child& c : children_) {
    if (c.pid != pid || c.reaped) continue;
    kill(c.pid, SIGKILL);
    int status = 0;
    waitpid(c.pid, &status, 0);
    c.reaped = true;
  }
}

std::optional<coordinator::DeadWorker> Supervisor::Dead() {
  if (const int sig = g_signal; sig != 0) throw Interrupted(sig);
  for (Child& c : children_) {
    if (c.reaped) continue;
    int status = 0;
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.reaped = true;
      std::string what = WIFSIGNALED(status)
                             ? "was killed by signal " + std::to_string(WTERMSIG(status))
                             : "exited with status " + std::to_string(WEXITSTATUS(status));
      return coordinator::DeadWorker{c.pid, what};
    }
  }
  return std::nullopt;
}

void Supervisor::StopWorkers(const std::function<void(const std::string&)>& warn) {
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(3);
  for (Child& c : children_) {
    while (!c.reaped) {
      int status = 0;
      const pid_t r = waitpid(c.pid, &status, WNOHANG);
      if (r == c.pid || r < 0) {
        c.reaped = true;
      } else if (Clock::now() >= deadline) {
        if (warn) {
          warn("chip " + std::to_string(c.chip) + " (worker pid " + std::to_string(c.pid) +
               ") did not stop; killing it");
        }
        kill(c.pid, SIGKILL);
        waitpid(c.pid, &status, 0);
        c.reaped = true;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void Supervisor::RemoveDir() {
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
  dir_.clear();
}

}  // namespace lockstep::launch
