// The compute thread of a worker (agent.cc): it pins itself, loads the shard, opens the chip's
// links, tells the coordinator it is ready and runs ChipRunner::RunStep for every Step the control
// thread hands it, posting each result (with the step's CPU time and where its wall time went),
// or, after a runStart, ChipRunner::Run on its own (admissions from the control thread, tokens,
// refusals and the run's report posted as they come).
// A failed step is posted as an ErrorMsg and kept for the report. Raising `abandon` takes it out
// of a step at once (failover: links dropped, nothing reported). Private to the worker library.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/control/channel.h"
#include "lockstep/control/messages.h"
#include "lockstep/worker/agent.h"
#include "lockstep/worker/flight_recorder.h"

namespace lockstep::worker {

// What the control thread hands the compute thread, and what comes back.
struct Shared {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<control::Step> steps;
  bool stop = false;
  // A self-clocked run (run_control.h): its start, and the admission log as it came (runStart's
  // entries, then each admit), and whether it is closed. The compute thread reads them through
  // its RunControl.
  std::optional<control::RunStartMsg> run_start;
  std::vector<control::Admission> log;
  bool log_closed = false;
  // Failover: raised to take the compute thread out of its step (links dropped, no report).
  std::atomic<bool> abandon{false};
  std::optional<Error> failure;
  std::atomic<int64_t> last_step{-1};
  std::atomic<int64_t> steps_done{0};
  std::string pinned;
  // Written by the compute thread, read by the control thread (heartbeats, stall reports).
  std::unique_ptr<FlightRecorder> recorder;
};

// The compute thread's body: serves chip `a` until `shared.stop`.
void RunCompute(const WorkerOptions& options, const control::AssignmentMsg& a,
                const std::vector<std::byte>& shard, control::ControlConnection::Outbox& outbox,
                Shared& shared);

// The transport options of an assignment's (or a link check's) settings for `chip`, with this
// worker's CURVE key pair; InvalidInput when the run uses CURVE and the worker has no keys.
transport::TransportOptions ToTransportOptions(const control::TransportSettings& s,
                                               const std::vector<transport::LinkSpec>& links,
                                               uint32_t chip, const WorkerOptions& options);

// Pre-flight (lockstep deploy): opens the chip's links — every end says hello naming its chip and
// port and checks its peer's (transport::Transport::OpenChip) — closes them and posts the
// result. Runs on a thread of its own so the control thread keeps answering pings meanwhile.
void CheckLinks(const WorkerOptions& options, const control::LinkCheckMsg& check,
                control::ControlConnection::Outbox& outbox);

}  // namespace lockstep::worker
