// A chip's flight recorder: the last N instructions its ChipRunner executed (op index, kind, the
// link, port and peer it moved data on, bytes, step, when it started and ended relative to the
// step's start), kept in a fixed ring, plus where the chip is right now (the step it runs, the
// instruction it is in: usually the receive it waits on). When a run stalls, the coordinator
// collects every worker's recorder and names the chips that are behind and the link they wait on
// (coordinator/src/stall_report.h). It also sums each step's wall time by instruction kind
// (control::StepTimes: compute, reduce, send, the waits of recv/forward) and the payload bytes
// it sent on each outgoing link (control::LinkBytes), which the worker reports with the step's
// result: where a decode step goes (`lockstep run --json`), per-chip step times and link bytes
// (`lockstep serve`'s /metrics).
//
// Recording never allocates once the first step has seen every outgoing link: the ring is sized
// once at construction; an op overwrites the oldest entry. Times are wall-clock nanoseconds from an
// injected clock (steady_clock by default) and are diagnostics only: they never shape a schedule or
// an output.
//
// Thread-safety: one thread records (the chip's compute thread); any thread may read Entries()
// and Progress() at the same time (the control thread answering heartbeats). A mutex guards both
// sides; it is held for a few stores per instruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "lockstep/control/progress.h"

namespace lockstep::worker {

class FlightRecorder {
 public:
  // Nanoseconds from an arbitrary origin; must not go backwards.
  using ClockFn = std::function<int64_t()>;
  static constexpr size_t kDefaultCapacity = 64;

  explicit FlightRecorder(size_t capacity = kDefaultCapacity, ClockFn clock = {});

  void BeginStep(int64_t step);
  // The instruction `entry` starts now (its start and end are filled in here, and its step
  // unless it has one: a self-clocked run's steps overlap).
  void BeginOp(control::FlightEntry entry);
  // The current instruction finished: it enters the ring.
  void EndOp();
  // The step put `bytes` of payload on outgoing link `link` (to chip `peer`).
  void Sent(int32_t link, int32_t peer, int64_t bytes);
  void EndStep();
  // A self-clocked run (ChipRunner::Run): step `step` ended, while a later one may be running.
  void CompleteStep(int64_t step);

  // The last min(capacity, recorded) instructions, oldest first.
  std::vector<control::FlightEntry> Entries() const;
  control::ChipProgress Progress() const;
  // The last completed step's times (all zero before the first EndStep).
  control::StepTimes LastStepTimes() const;
  // The last completed step's bytes by outgoing link, in link order (empty before the first).
  std::vector<control::LinkBytes> LastStepSent() const;
  size_t capacity() const { return ring_.size(); }
  int64_t recorded() const;

 private:
  int64_t Now() const;

  ClockFn clock_;
  mutable std::mutex mutex_;
  std::vector<control::FlightEntry> ring_;
  size_t next_ = 0;
  int64_t recorded_ = 0;
  int64_t step_start_ns_ = 0;
  control::StepTimes running_times_;                          // the step in progress
  control::StepTimes last_times_;                             // the last completed step
  std::vector<control::LinkBytes> running_sent_, last_sent_;  // in link order
  control::ChipProgress progress_;
};

}  // namespace lockstep::worker
