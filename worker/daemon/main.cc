// lockstep-worker: serves one chip of a distributed run. Connects to the coordinator, registers
// with this host's hwloc summary, receives its chip, program and weight shard, pins itself to
// its assigned core, opens its links and runs the steps it is sent until told to stop.
// Exit status: 0 after a clean shutdown, 1 on a runtime failure (one line on stderr: a wrong
// coordinator address or a coordinator that went away is reported within the timeouts), 2 on a
// usage error.
#include <boost/program_options.hpp>
#include <iostream>

#include "lockstep/common/error.h"
#include "lockstep/common/memory.h"
#include "lockstep/transport/curve.h"
#include "lockstep/worker/agent.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  lockstep::KeepFreedMemory();  // memory.h: large buffers are reused, not faulted in anew
  lockstep::worker::WorkerOptions options;
  int64_t connect_ms = 5000, timeout_ms = 5000;
  bool json = false, no_pin = false, quiet = false;
  std::string curve_dir;
  po::options_description opts("options");
  opts.add_options()("help,h", "show this help")(
      "coordinator", po::value<std::string>(&options.coordinator),
      "the coordinator's control address: ipc://PATH or tcp://HOST:PORT (required)")(
      "tag", po::value<std::string>(&options.tag),
      "free text the coordinator shows for this worker")(
      "chip", po::value<int32_t>(&options.chip)->default_value(-1),
      "ask for this chip of the plan (default: any)")(
      "connect-timeout-ms", po::value<int64_t>(&connect_ms)->default_value(5000),
      "give up when no coordinator answers within this")(
      "timeout-ms", po::value<int64_t>(&timeout_ms)->default_value(5000),
      "give up when the coordinator is silent this long")(
      "curve", po::value<std::string>(&curve_dir),
      "tcp with CURVE: DIR holding the run's key pair (lockstep.public, lockstep.secret)")(
      "no-pin", po::bool_switch(&no_pin), "do not pin to the assigned core")(
      "json", po::bool_switch(&json), "print the report as one JSON object")(
      "quiet", po::bool_switch(&quiet), "no informational lines on stderr");
  const char* usage =
      "usage: lockstep-worker --coordinator ADDRESS [--tag T] [--connect-timeout-ms N] "
      "[--timeout-ms N] [--curve DIR] [--no-pin] [--json]";
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "lockstep-worker: " << e.what() << " (see --help)\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << usage << "\n\n"
              << "Serves one chip of a distributed run (see `lockstep run --transport ipc`).\n\n"
              << opts;
    return 0;
  }
  if (options.coordinator.empty()) {
    std::cerr << "lockstep-worker: missing --coordinator ADDRESS (see --help)\n";
    return 2;
  }
  if (connect_ms < 1 || timeout_ms < 1) {
    std::cerr << "lockstep-worker: timeouts must be >= 1 ms\n";
    return 2;
  }
  options.connect_timeout = std::chrono::milliseconds(connect_ms);
  options.coordinator_timeout = std::chrono::milliseconds(timeout_ms);
  options.pin = !no_pin;
  if (!quiet) {
    options.log = [](std::string_view line) { std::cerr << "lockstep-worker: " << line << "\n"; };
  }
  try {
    if (!curve_dir.empty()) options.curve_keys = lockstep::transport::ReadCurveKeyPair(curve_dir);
    const lockstep::worker::WorkerReport report = lockstep::worker::RunWorker(options);
    if (json) {
      std::cout << "{\"chip\": " << report.chip << ", \"steps\": " << report.steps
                << ", \"pinned\": \"" << report.pinned << "\"}\n";
    } else if (!quiet && !report.failure.empty()) {
      std::cerr << "lockstep-worker: chip " << report.chip
                << " shut down after a failed step: " << report.failure << "\n";
    } else if (!quiet) {
      std::cerr << "lockstep-worker: chip " << report.chip << " ran " << report.steps << " steps ("
                << report.pinned << "); shut down\n";
    }
    return 0;
  } catch (const lockstep::Error& e) {
    std::cerr << "lockstep-worker: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "lockstep-worker: error: " << e.what() << "\n";
    return 1;
  }
}
