// "Who is behind" when a distributed run stalls: a pure function of every chip's progress (from
// its heartbeats or its flight recorder) and the step the coordinator waits for. No I/O, no
// clock: the coordinator gathers the inputs, this names the culprits, so the analysis is unit
// tested on hand-made states. Private to the coordinator library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/control/progress.h"

namespace lockstep::coordinator {

struct ChipStall {
  int32_t chip = -1;
  bool finished = false;  // its result for the step arrived
  bool heard = false;     // it answered (heartbeat or recorder) during the stall
  control::ChipProgress progress;
  std::vector<control::FlightEntry> entries;  // its flight recorder, oldest first (may be empty)
};

struct StallReport {
  std::vector<int32_t> finished;  // chips whose result for the step arrived, ascending
  std::vector<int32_t> behind;    // the others, ascending
  // The chip that more waiting chips wait on than on any other (at least two), or -1.
  int32_t suspect = -1;
  // One line, e.g. "step 12 stalled: chip 5 waits at step 12 op 37: recv on link 3 (port 2)
  // from chip 4 for 2000 ms; chips 0-4 finished step 12".
  std::string text;
};

// `chips` in any order; the report lists them by chip id.
StallReport AnalyzeStall(int64_t step, std::vector<ChipStall> chips);

// "0-4,6,8-9": ascending chip ids with runs collapsed.
std::string ChipRanges(const std::vector<int32_t>& chips);

// "recv on link 3 (port 2) from chip 4": what one instruction moves, for reports.
std::string DescribeEntry(const control::FlightEntry& entry);

// The flight recorders as one JSON document (what --flight-recorder FILE holds):
// {"step": S, "report": TEXT, "chips": [{"chip", "finished", "progress", "entries": [...]}]}.
std::string StallJson(int64_t step, const StallReport& report, const std::vector<ChipStall>& chips);

}  // namespace lockstep::coordinator
