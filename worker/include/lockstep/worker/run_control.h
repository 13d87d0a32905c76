// How a chip runs on its own (ChipRunner::Run): the kinds of step every chip executes, the
// admission log entries held by the chips that need them, and the chip's side of the control
// plane during a run (RunControl: the worker's control channel implements it; tests keep it in
// memory).
//
// Steps are numbered 0, 1, 2, ... and every chip executes every step, as its program for the
// step's kind: `decode` (one period of the decode program: every slot one token, an idle slot's
// tensors with zero rows), `prefill` (one slot's prompt, the prefill program of its bucket) or
// `stop` (the run ends before it). Rank 0 of stage 0 alone decides the kinds (StepPlanner), from
// its admission log and the tokens the sampling chip sends back over the link the schedule
// already carries (a slot whose request finished is free again); every message a chip sends
// carries the kind of step `its step + lookahead` when the chip knows it (MessageHeader::ahead),
// so every chip learns each kind from its data before it runs that step — no per-step control
// message. Steps 0 .. lookahead - 1 are decode steps with every slot idle, known to all.
//
// Plain values; RunControl's contract below.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/control/lag_histogram.h"
#include "lockstep/control/step.h"

namespace lockstep::worker {

struct StepKind {
  enum Kind : uint8_t { kDecode = 0, kPrefill = 1, kStop = 2 };
  Kind kind = kDecode;
  int32_t slot = 0;       // prefill: the slot the prompt goes into
  int32_t bucket = 0;     // prefill: which prefill program (ChipSetup::prefill index)
  int64_t admission = 0;  // prefill: the admission log entry

  friend bool operator==(const StepKind&, const StepKind&) = default;
};

// The 64-bit form a message header carries; 0 means "not known". Throws Error (kProtocol) for a
// code that is not one (DecodeStepKind), and kInvalidInput for a kind whose fields do not fit
// (slot < 2^14, bucket < 2^8, admission < 2^40).
uint64_t EncodeStepKind(const StepKind& kind);
std::optional<StepKind> DecodeStepKind(uint64_t code);

// The log's entries and the tokens drawn are control values (control/step.h).
using control::Admission;
using control::SampledToken;

// How late instructions started (a control value: the run's report carries it).
using control::LagHistogram;

// The chip's side of the control plane while it runs. Called from the chip's compute thread;
// an implementation feeds it from another (the worker's control thread), so every call may
// block and must be thread-safe against that feeder.
class RunControl {
 public:
  virtual ~RunControl() = default;
  // Admission `number`, waiting until it has come (stage 0's ranks and the sampling chip, when a
  // step's kind names it). Throws Error when the run is abandoned meanwhile.
  virtual Admission AwaitAdmission(int64_t number) = 0;
  // Rank 0 of stage 0, before deciding a step: the admissions that came since the last call, in
  // the order sent, and whether the log is closed (no more will come). `wait`: block until one
  // comes or the log closes.
  struct Inbox {
    std::vector<Admission> admissions;
    bool closed = false;
  };
  virtual Inbox Poll(bool wait) = 0;
  // Rank 0 of stage 0: `admission` was not applied, for `reason` (it names a step already
  // decided: steps up to `decided` are; or its prompt fits no prefill program).
  virtual void Refuse(const Admission& admission, int64_t decided, const std::string& reason) = 0;
  // The sampling chip: the tokens one step drew (slot order), when the step ends on the chip.
  virtual void Emit(int64_t step, std::vector<SampledToken> tokens) = 0;
};

}  // namespace lockstep::worker
