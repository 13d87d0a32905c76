// Where a chip is and where its time went, as a worker reports it to the coordinator: the
// entries of its flight recorder (worker/flight_recorder.h keeps the last N), its progress (the
// step and instruction it is in, usually the receive it waits on) and the wall time of a step by
// instruction kind and its bytes by outgoing link. Heartbeats carry the progress, a stall report
// the entries (coordinator/src/stall_report.h), a step's result the times and bytes.
//
// Plain values. Times are wall-clock nanoseconds relative to the step's start: diagnostics only,
// they never shape a schedule or an output.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lockstep/schedule/schedule.h"

namespace lockstep::control {

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
  int64_t since_step_start_ns = 0;  // how long the step has run when the progress was taken

  friend bool operator==(const ChipProgress&, const ChipProgress&) = default;
};

// Where one step's wall time went on a chip: the time inside its instructions, by kind (a Recv
// or Forward is mostly waiting for the link; a Send is handing the message to the transport),
// and the whole step.
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

// The bytes a chip put on one of its outgoing links in a step: the payloads of its Send and
// Forward instructions there (the real tensors, whose rows follow the step's work, not the
// schedule's planned sizes; message headers not counted).
struct LinkBytes {
  int32_t link = -1;
  int32_t peer = -1;  // the chip at the far end
  int64_t bytes = 0;

  friend bool operator==(const LinkBytes&, const LinkBytes&) = default;
};

}  // namespace lockstep::control
