// The worker process: what `lockstep-worker` runs, and what a threaded run (sim, inproc) runs once
// per chip. RunWorker connects to the coordinator, registers with its
// host summary, receives its assignment, program and shard (checking every chunk's CRC32C and
// the final digest), pins itself to its assigned core, opens its links, tells the coordinator it
// is ready, then runs ChipRunner::RunStep for every Step and answers heartbeats until told to
// shut down. It speaks only the control protocol (control/) and the transport: it knows nothing of
// the coordinator's code.
//
// Two threads: the calling thread owns the control socket (answers pings while a step runs);
// a compute thread loads the shard, opens the links and runs the steps.
//
// Failure is bounded and explicit: no answer from the coordinator within `connect_timeout` (a
// wrong address, nothing listening) or silence for `coordinator_timeout` later (it went away)
// throws Error(kUnavailable / kDisconnected) naming the address; a step that fails is reported
// to the coordinator, and the worker waits: a failover assignment (a new schedule for the same
// place: the step is abandoned, links dropped and reopened, the shard kept) or shutdown (then
// the failure is in the report). Thread-safety: RunWorker may run on several threads at once
// (one per chip), each with its own options.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "lockstep/control/channel.h"
#include "lockstep/topology/host.h"
#include "lockstep/transport/curve.h"
#include "lockstep/transport/transport.h"

namespace lockstep::worker {

struct WorkerOptions {
  std::string coordinator;  // ipc://PATH or tcp://HOST:PORT, or mem://NAME on channel.network
  control::ChannelOptions channel;
  std::string tag;    // free text shown by the coordinator (e.g. the run directory)
  int32_t chip = -1;  // the chip to ask for; -1: whichever the coordinator gives
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds coordinator_timeout{5000};
  // Threads of one process (sim, inproc): the transport every chip shares. Null: the worker
  // creates its own from the assignment's settings (ipc, tcp).
  transport::Transport* shared_transport = nullptr;
  // The host summary to register with; unset = topology::DiscoverHost().
  std::optional<topology::HostSummary> host;
  // tcp with CURVE (TransportSettings::curve): this worker's key pair, read from its own files
  // (`lockstep-worker --curve DIR`); never sent over the control socket. A run that asks for
  // CURVE fails a worker without keys before it opens a link, naming the chip.
  std::optional<transport::CurveKeyPair> curve_keys;
  // Instructions the flight recorder keeps (worker/flight_recorder.h); sent with the progress
  // when the coordinator asks after a stall.
  size_t flight_recorder_capacity = 64;
  bool pin = true;                            // pin the compute thread to the assigned core
  std::function<void(std::string_view)> log;  // informational lines; empty: none
};

struct WorkerReport {
  int32_t chip = -1;
  int64_t steps = 0;
  std::string pinned;  // "cpu 1", or why not
  // A step that failed (already reported to the coordinator, which decides: fail over or stop);
  // empty: none.
  std::string failure;
};

// Serves one chip until the coordinator says shut down; returns what it did.
WorkerReport RunWorker(const WorkerOptions& options);

}  // namespace lockstep::worker
