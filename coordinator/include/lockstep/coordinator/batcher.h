// Batcher: the coordinator's admission of requests into the pipeline's slots. Pure (no I/O, no
// clock, no threads): requests wait in FIFO order; when a pipeline slot is free the oldest
// waiting request takes the lowest free slot; Next() gives the Step every chip runs next (each
// occupied slot's prompt or last sampled token); Complete() takes that step's results from the
// sampling chip, records each token (and its logits), and returns the requests that finished,
// freeing their slots for the next Next().
//
// A request generates exactly what model::Generate(prompt, max_new, sampling) would: the prompt
// is one slot work (a prefill), then each sampled token is fed back until max_new tokens exist.
// A request with max_new == 0 finishes at once with no tokens (it never takes a slot).
//
// Thread-safety: none; one owner (the coordinator's run loop).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "lockstep/control/step.h"
#include "lockstep/model/reference.h"

namespace lockstep::coordinator {

struct Request {
  uint64_t id = 0;  // unique among the batcher's requests, chosen by the caller
  std::vector<int32_t> prompt;
  int64_t max_new = 0;
  model::SamplingOptions sampling;
};

struct Finished {
  uint64_t id = 0;
  std::vector<int32_t> tokens;             // as model::Generation::tokens
  std::vector<std::vector<float>> logits;  // row i: what tokens[i] was drawn from (keep_logits)
};

struct BatcherOptions {
  int32_t slots = 1;  // pipeline slots (the schedule's sequences), >= 1
  // Longest prompt + max_new a request may have (the KV positions a slot holds); 0 = no limit.
  int64_t max_positions = 0;
  // Keep every token's logits in Finished; false: the steps ask the sampling chip for the token
  // alone (SlotWork::logits), and Finished::logits stays empty.
  bool keep_logits = true;
};

class Batcher {
 public:
  // Throws Error (kInvalidInput) for slots < 1.
  explicit Batcher(BatcherOptions options);

  // Queues a request. Throws Error (kInvalidInput) for an empty prompt, max_new < 0, a prompt +
  // max_new beyond max_positions, or an id already submitted and not yet finished.
  void Submit(Request request);

  // The next step (index = steps issued so far), or nullopt when nothing is waiting or running.
  // Admits waiting requests into free slots first. Each step must be completed before the next.
  std::optional<control::Step> Next();

  // Takes the results of the last step (one per slot with work, any order) and returns the
  // requests that finished, in slot order. Throws Error (kInternal) for results that do not
  // match the step (a missing, extra or foreign slot).
  std::vector<Finished> Complete(std::span<const control::SlotResult> results);

  // Failover: forgets the step in flight (its results will never come) and makes every running
  // request rebuild its KV state in its slot: its next work is a prefill (reset) of its prompt
  // followed by the tokens it generated so far, at position 0, with sample_index = the tokens
  // generated, so it samples the token the lost step would have — tokens already recorded are
  // kept, none is produced twice. Slots and waiting requests keep their places.
  void Rewind();

  // Drops request `id` (its client went away, or it reached a stop of its own): it leaves the
  // queue or frees its slot for the next Next(), and finishes (TakeDone) with the tokens it has.
  // Only between steps (Error kInternal while one is pending). False: no such request.
  bool Cancel(uint64_t id);

  size_t waiting() const { return waiting_.size(); }
  size_t running() const;
  bool idle() const { return waiting_.empty() && running() == 0 && done_.empty(); }
  // Requests with max_new == 0, finished on submission; Complete and TakeDone return them.
  std::vector<Finished> TakeDone();

 private:
  struct Running {
    Request request;
    Finished out;
    int64_t position = 0;  // KV positions filled
    bool fresh = true;     // the slot has not run this request yet (reset, prompt)
    bool replay = false;   // Rewind: reset, prompt + generated tokens
  };
  BatcherOptions options_;
  std::deque<Request> waiting_;
  std::vector<std::optional<Running>> slots_;
  std::vector<Finished> done_;
  std::optional<control::Step> pending_;
  int64_t next_index_ = 0;
};

}  // namespace lockstep::coordinator
