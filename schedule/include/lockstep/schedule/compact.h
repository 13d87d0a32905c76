// The compact schedule: every chip's instructions for one pass of one sequence slot, stored once,
// with the pattern by which they repeat for every slot and every pass.
//
// A run is a few phases in a row — the prompt's chunks before the last, its last chunk, then the
// decode tokens. Within a phase every sequence slot runs the same instructions on the same chips
// and links, only shifted in time: the compiler schedules one copy (slot 0, the phase's first
// pass) against reservation tables folded modulo the slot stride `slot_ns`, so copy j (pass
// j / slots, slot j % slots) is copy 0 shifted by j x slot_ns and never meets another copy on a
// chip's compute unit or a link direction. A phase's bodies are therefore the whole schedule of
// that phase, whatever the number of slots or tokens: memory and file size are linear in chips x
// ops per pass (the explicit form, GlobalSchedule, is linear in chips x ops x slots x tokens).
//
// Copies of a body differ only in: time (+ j x slot_ns, + the phase's start_ns), token
// (first_token + pass), sequence (+ slot), message ids (msg_base + j x messages + the body's id).
// Passes follow each other per slot and per chip: an instruction with no deps in the body, in
// copy j >= slots, waits for the last-ending instruction of the same sequence on the same chip in
// copy j - slots; in a phase's first pass it waits for the previous phase's last pass the same
// way (when the chip has instructions of that sequence there). Expand() writes those waits as
// deps; the validator and simulator apply the same rule.
//
// The runtime executes explicit per-chip programs (ChipProgram); DecodePeriodProgram() and
// PrefillPassProgram() give one chip's program for one step, equal to what the explicit compile
// gives for that chip, without expanding any other chip. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/partition/plan.h"
#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule {

enum class PhaseKind : uint8_t {
  kPrefillChunk,  // a prompt chunk before the last one: no LM head, no token sent back
  kPrefillLast,   // the prompt's last chunk: LM head, sampling, the first token back to stage 0
  kDecode,        // one decode token per pass
};
std::string_view PhaseKindName(PhaseKind kind);  // "prefill_chunk", "prefill_last", "decode"

// How a phase's bodies repeat. Copy j = pass (j / slots), slot (j % slots), for j in
// [0, passes x slots).
struct Phase {
  PhaseKind kind = PhaseKind::kDecode;
  int32_t first_token = 0;  // the token of pass 0: prompt chunk c of C is token c - C; decode 0
  int64_t passes = 1;       // prompt chunks of this kind, or decode tokens
  int32_t slots = 1;        // sequence slots (sequences in flight)
  // Copy j starts j x slot_ns after copy 0 (so a pass repeats every slots x slot_ns). Each
  // body's compute and link reservations fold disjointly modulo slot_ns.
  int64_t slot_ns = 1;
  int64_t start_ns = 0;  // the run time of the bodies' time 0
  int64_t messages = 0;  // message ids per copy: bodies use 0 .. messages - 1
  int64_t msg_base = 0;  // copy j's message m is msg_base + j x messages + m
  // Slot 0's token back at every rank of stage 0, in body time (decode and last chunk; 0 else).
  int64_t token_latency_ns = 0;

  int64_t copies() const { return passes * slots; }
  int64_t pass_ns() const { return slots * slot_ns; }
  friend bool operator==(const Phase&, const Phase&) = default;
};

struct CompactChip {
  ChipId chip = 0;
  int stage = -1;  // -1: the chip only forwards
  int rank = -1;
  int64_t resident_bytes = 0;
  // Per phase (CompactSchedule::phases order): the chip's instructions of copy 0 (sequence 0,
  // the phase's first token), in planned start order, times in body time; deps index this body;
  // msg / in_msg are the phase's body message ids. Empty when the chip has nothing in a phase.
  std::vector<std::vector<Instruction>> bodies;

  friend bool operator==(const CompactChip&, const CompactChip&) = default;
};

struct CompactSchedule {
  std::string model;
  std::string topology;
  // Digest of the plan compiled (PlanDigest): a schedule file names the plan it belongs to.
  uint64_t plan_digest = 0;
  int64_t tokens = 0;  // decode tokens per sequence (the decode phase's passes)
  int64_t sequences = 0;
  int64_t batch = 1;
  int stages = 0;
  // Summary figures, as GlobalSchedule's (schedule.h): token latency (sequence 0's first decode
  // token through every stage and back), cycle (one sequence's time between tokens: slots x
  // slot_ns of the decode phase), period (cycle / sequences), makespan (the last end of the run).
  int64_t token_latency_ns = 0;
  int64_t cycle_ns = 0;
  int64_t period_ns = 0;
  int64_t makespan_ns = 0;
  bool prefill = false;
  int64_t prompt_len = 0;
  int64_t prompt_bucket = 0;
  int64_t prefill_chunks = 0;
  int64_t prefill_chunk_tokens = 0;
  int64_t prefill_peak_bytes = 0;
  int64_t time_to_first_token_ns = 0;
  int64_t prefill_compute_path_ns = 0;
  int64_t compute_path_ns = 0;
  int64_t slowest_stage_compute_ns = 0;
  std::vector<Phase> phases;       // in run order
  std::vector<CompactChip> chips;  // sorted by chip id; only chips with instructions

  // Instructions stored (bodies), and those of the run they stand for (every copy).
  size_t body_instruction_count() const;
  int64_t instruction_count() const;
  // The phase of `kind`, or -1.
  int PhaseIndex(PhaseKind kind) const;
  // The chip's entry, or nullptr.
  const CompactChip* Chip(ChipId chip) const;

  friend bool operator==(const CompactSchedule&, const CompactSchedule&) = default;
};

// FNV-1a (64 bit) of partition::SerializePlan(plan): names the plan a schedule belongs to.
uint64_t PlanDigest(const partition::Plan& plan);

// Compiles `plan` (made for `spec` on `topo`) into the compact form. Same options and errors as
// Compile(); `modulo` is ignored (the compact form is always one pass per phase plus its
// pattern) and `tokens` only sets the decode phase's passes.
CompactSchedule CompileCompact(const partition::Plan& plan, const partition::ModelSpec& spec,
                               const topology::Topology& topo, const ScheduleOptions& options = {});
// A self-contained plan with its own model, topology and cost figures (see Compile).
CompactSchedule CompileCompact(const partition::Plan& plan, const ScheduleOptions& options = {});

// The explicit form of the whole run (every phase, `tokens` decode passes; 0 = schedule.tokens):
// each chip's program is the merge of all copies of its bodies in planned start order (ties:
// earlier phase, earlier copy, body order), with the waits between passes written as deps, and
// every link direction's reservations.
GlobalSchedule Expand(const CompactSchedule& schedule, int64_t tokens = 0);

// The explicit form of one decode period — every slot's token, times and message ids relative to
// the decode phase — is what the runtime runs each step: Compile(plan, spec, topo, {.tokens = 1,
// .sequences = slots}). The modulo GlobalSchedule of `iterations` periods is that plus a repeat
// rule.
GlobalSchedule DecodePeriod(const CompactSchedule& schedule, int64_t iterations = 0);

// One chip's program for one decode period (DecodePeriod(schedule).programs' entry for `chip`),
// computed from that chip's bodies alone. Throws Error (kInvalidInput) for a chip without
// instructions.
ChipProgram DecodePeriodProgram(const CompactSchedule& schedule, ChipId chip);
// One chip's program for prefill pass `pass` (0 .. prefill_chunks - 1): every slot's chunk
// `pass`, as Expand(schedule) has them on that chip (run times and message ids; deps within the
// pass). Throws Error (kInvalidInput) when the schedule has no such pass or the chip no
// instructions.
ChipProgram PrefillPassProgram(const CompactSchedule& schedule, ChipId chip, int64_t pass);

// The link directions into a chip and, per phase, their reservations of copy 0 (body times and
// message ids, start order): what a schedule file stores with each chip, so that a worker
// reading only its own chip still knows the order its messages arrive in.
using IncomingBodies = std::vector<std::vector<LinkTable>>;  // per phase
IncomingBodies IncomingOf(const CompactSchedule& schedule, ChipId chip);
// The link directions into the chip and their reservations (start order) during one decode
// period or one prefill pass (worker::ChipSetup::incoming), from IncomingOf's tables (or a file's).
std::vector<LinkTable> DecodePeriodIncoming(const CompactSchedule& schedule,
                                            const IncomingBodies& incoming);
std::vector<LinkTable> PrefillPassIncoming(const CompactSchedule& schedule,
                                           const IncomingBodies& incoming, int64_t pass);

// The compact schedule as one JSON object: summary figures, the phases and every chip's bodies.
// Deterministic.
std::string ScheduleToJson(const CompactSchedule& schedule);

// An explicit schedule seen as a compact one: one phase whose bodies are the programs (one copy;
// a modulo GlobalSchedule: `iterations` passes every repeat_ns). What Validate and Simulate use
// for explicit schedules, so both forms are checked and run by the same code.
CompactSchedule AsCompact(const GlobalSchedule& schedule);

}  // namespace lockstep::schedule
