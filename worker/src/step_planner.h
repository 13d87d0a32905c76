// What rank 0 of stage 0 decides for every chip: the kind of each step (run_control.h). Private
// to worker/ (self_clocked.cc); pure and deterministic: the same offers, frees and closes in the
// same order between the same decisions give the same kinds.
//
// Rules. Steps are decided in order, from `lookahead` on (steps 0 .. lookahead - 1 are empty
// decode steps every chip knows). Admissions are taken in log order: the oldest one waiting takes
// the lowest free slot at the first step >= its named step at which a slot is free — that step is
// its prefill; a slot is occupied from its prefill until Free (the request's last token came back
// to stage 0). Otherwise the step decodes; when nothing occupies a slot and nothing waits, the
// step stops the run if the log is closed, and Decide asks the caller to wait for the log if not.
// An offer that names a step already decided is refused, so no admission is ever applied later
// than a step that was still open when it came (a timing race changes only whether it is
// refused, never what a run computes).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/worker/run_control.h"

namespace lockstep::worker {

class StepPlanner {
 public:
  // `buckets`: the prompt lengths of the prefill programs, ascending (ChipSetup::prefill).
  StepPlanner(int32_t slots, std::vector<int64_t> buckets, int lookahead);

  // An admission log entry (in log order; a refused one may come again naming a later step).
  // Returns why it is refused, or nothing when it is taken.
  std::optional<std::string> Offer(const Admission& admission);
  // No more admissions will come.
  void Close() { closed_ = true; }
  // Slot `slot` is free: its request's last token came back.
  void Free(int32_t slot);

  // Decides step next_step() and returns its kind; nullopt when there is nothing to do and the
  // log is open (wait for an offer or the close, then decide again).
  std::optional<StepKind> Decide();
  int64_t next_step() const { return next_step_; }
  // Whether any slot is occupied or any admission waits.
  bool busy() const;

 private:
  std::vector<int64_t> buckets_;
  std::vector<bool> occupied_;
  std::deque<Admission> waiting_;
  int64_t next_step_ = 0;
  int64_t next_number_ = 0;  // the log entry the next offer must be (or a refused one again)
  bool closed_ = false;
};

}  // namespace lockstep::worker
