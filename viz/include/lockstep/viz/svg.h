// Pictures a user can look at: a plan laid out on its system, and one simulated period of its
// schedule as a Gantt chart, both as self-contained SVG (no scripts, no external fonts or images;
// text in the generic sans-serif family, so any SVG viewer or rsvg-convert renders it).
//
// PlanSvg draws racks -> nodes -> chips, each chip coloured by its stage (stage numbers written on
// it where there is room), every TP group outlined, spare chips hatched, down chips crossed out,
// unused chips grey, and each stage-to-stage route (rank 0 to the next stage's rank 0, over the
// topology's deterministic minimal route; the sampled token's return dashed) drawn hop by hop.
// When chips would be smaller than a readable square it draws one square per node (split by the
// stages on it), or per rack, and says so in the picture.
//
// GanttSvg draws one decode period of a simulated compact schedule: a row per chip (or, when
// there are too many chips for readable rows, per stage: its rank 0), time across; per row a
// compute lane (compute, reduce) and a link lane (send, forward; receives as ticks), idle left
// blank; sequence slot 0's token's critical path outlined in red and joined hop to hop; a legend
// and the figures the simulation measured. Bars narrower than a pixel merge with their
// neighbours of the same kind.
//
// Both are pure functions of their inputs: the same inputs give the same bytes. Elements carry a
// class ("chip", "node-cell", "rack-cell", "tp-group", "route", "spare", "down", "bar",
// "critical", "legend") so tests and tools can find them.
#pragma once

#include <string>

#include "lockstep/partition/plan.h"
#include "lockstep/schedule/compact.h"
#include "lockstep/schedule/simulate.h"

namespace lockstep::viz {

std::string PlanSvg(const partition::Plan& plan);

// `run` must come from Simulate(schedule, topo) with keep_times and one decode token (the
// schedule's tokens may be more: the first decode pass is drawn). Throws Error (kInvalidInput)
// when `run` has no per-instance times or failed.
std::string GanttSvg(const partition::Plan& plan, const schedule::CompactSchedule& schedule,
                     const schedule::SimResult& run);

}  // namespace lockstep::viz
