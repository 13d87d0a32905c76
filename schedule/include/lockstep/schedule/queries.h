// Questions a deployment asks of a compiled schedule: which links one chip's program uses, the
// order messages arrive on the links into a chip, how deep a link's queue must be. Pure functions
// of the schedule (no I/O, no clock), thread-safe. The schedule's form is the compiler's
// (schedule.h); these only read it.
#pragma once

#include <cstdint>
#include <vector>

#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule {

// The pipeline slots a program was compiled for (1 + the largest sequence it names).
int32_t ProgramSlots(const ChipProgram& program);

// The links a program uses (its Send/Forward/Recv links), ascending, without duplicates — what
// Transport::OpenChip must open for the chip.
std::vector<topology::LinkId> ProgramLinks(const ChipProgram& program);

// The most messages one step moves over one link direction. A chip runs its program in order
// and may trail its peers within a step, so each endpoint's queue must hold a step's messages
// (twice that if chips may start the next step before every peer finished this one), or a
// sender can block on a receiver that waits for the sender: TransportOptions::queue_capacity.
int64_t MaxMessagesPerLinkDirection(const GlobalSchedule& schedule);

// The reservation tables of the link directions that end at `chip`, in the schedule's order.
std::vector<LinkTable> IncomingTables(const GlobalSchedule& schedule, topology::ChipId chip);

// A compiled prefill (ScheduleOptions::prefill, one sequence, one decode token) restricted to the
// prompt's chunks (token < 0): one slot's prompt as one step of a self-clocked run
// (worker::ChipSetup::prefill). Deps, message ids and link tables are kept for the instructions
// that remain; makespan_ns is the last remaining instruction's end. Throws Error (kInvalidInput)
// when a prompt instruction depends on a decode one.
GlobalSchedule PrefillPass(const GlobalSchedule& compiled);

}  // namespace lockstep::schedule
