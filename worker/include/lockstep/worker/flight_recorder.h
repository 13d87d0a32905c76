// A chip's flight recorder: the last N instructions its ChipRunner executed (op index, kind, the
// link, port and peer it moved data on, bytes, step, when it started and ended relative to the
// step's start), kept in a fixed ring, plus where the chip is right now (the step it runs, the
// instruction it is in: usually the receive it waits on). When a run stalls, the coordinator
// collects every worker's recorder and names the chips that are behind and the link they wait on
// (coordinator/src/stall_report.h). It also sums each step's wall time by instruction kind
// (StepTimes: compute, reduce, send, the waits of recv/forward), which the worker reports with the
// step's result: where a decode step goes (`lockstep run --json`).
//
// Recording never allocates: the ring is sized once at construction; an op overwrites the
// oldest entry. Times are wall-clock nanoseconds from an injected clock (steady_clock by
// default) and are diagnostics only: they never shape a schedule or an output.
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

#include "lockstep/schedule/schedule.h"

namespace lockstep::worker {

struct FlightEntry {
  int64_t step = -1;  // Step::index
  int32_t op = -1;    // instruction index in the chip's program
  schedule::InstrKind kind = schedule::InstrKind::kCompute;
  // The link it moves data on: Send -> the outgoing link, Recv and Forward -> the incoming one
  // (what it waits on first). -1 for Compute/Reduce.
  int32_t link = -1;
  int32_t port = -1;     // this chip's port on `link`
  int32_t peer = -1;     // the chip at the far end
  int64_t bytes = 0;     // planned message size (Send/Recv/Forward)
  int64_t start_ns = 0;  // since the step started
  int64_t end_ns = -1;   // since the step started; -1 while it runs

  friend bool operator==(const FlightEntry&, const FlightEntry&) = default;
};

// Where a chip is: the step it runs (or last ran) and the instruction it is in.
struct ChipProgress {
  int64_t step = -1;  // the step running, or the last one started
  bool running = false;
  int64_t last_completed_step = -1;
  // The instruction it is in while running (op -1: between instructions); when it waits on a
  // link this is the Recv/Forward/Send that blocks.
  FlightEntry current;
  int64_t since_step_start_ns = 0;  // how long the step has run when Progress() was taken

  friend bool operator==(const ChipProgress&, const ChipProgress&) = default;
};

// Where one step's wall time went on a chip: the time inside its instructions, by kind (a Recv
// or Forward is mostly waiting for the link; a Send is handing the message to the transport),
// and the whole step from BeginStep to EndStep.
struct StepTimes {
  static constexpr size_t kKinds = static_cast<size_t>(schedule::InstrKind::kForward) + 1;
  int64_t by_kind_ns[kKinds] = {};  // indexed by schedule::InstrKind
  int64_t step_ns = 0;

  int64_t of(schedule::InstrKind kind) const { return by_kind_ns[static_cast<size_t>(kind)]; }
  StepTimes& operator+=(const StepTimes& o) {
    for (size_t k = 0; k < kKinds; ++k) by_kind_ns[k] += o.by_kind_ns[k];
    step_ns += o.step_ns;
    return *this;
  }
  friend bool operator==(const StepTimes&, const StepTimes&) = default;
};

class FlightRecorder {
 public:
  // Nanoseconds from an arbitrary origin; must not go backwards.
  using ClockFn = std::function<int64_t()>;
  static constexpr size_t kDefaultCapacity = 64;

  explicit FlightRecorder(size_t capacity = kDefaultCapacity, ClockFn clock = {});

  void BeginStep(int64_t step);
  // The instruction `entry` starts now (its step, start and end are filled in here).
  void BeginOp(FlightEntry entry);
  // The current instruction finished: it enters the ring.
  void EndOp();
  void EndStep();

  // The last min(capacity, recorded) instructions, oldest first.
  std::vector<FlightEntry> Entries() const;
  ChipProgress Progress() const;
  // The last completed step's times (all zero before the first EndStep).
  StepTimes LastStepTimes() const;
  size_t capacity() const { return ring_.size(); }
  int64_t recorded() const;

 private:
  int64_t Now() const;

  ClockFn clock_;
  mutable std::mutex mutex_;
  std::vector<FlightEntry> ring_;
  size_t next_ = 0;
  int64_t recorded_ = 0;
  int64_t step_start_ns_ = 0;
  StepTimes running_times_;  // the step in progress
  StepTimes last_times_;     // the last completed step
  ChipProgress progress_;
};

}  // namespace lockstep::worker
