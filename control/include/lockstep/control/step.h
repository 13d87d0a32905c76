// The run-control vocabulary: what the coordinator asks of every chip for one step of the
// pipeline and what the sampling chip answers. A step gives every pipeline slot at most one piece
// of work (a prompt, or the last sampled token); every chip runs its program once for it
// (worker/chip_runner.h), and the sampling chip (last stage, rank 0) returns one result per slot
// that had work. The coordinator's admission (coordinator/batcher.h) makes the steps.
//
// Plain values, copied freely; proto/control.capnp (Step, StepResult) carries them.
#pragma once

#include <cstdint>
#include <vector>

#include "lockstep/model/reference.h"

namespace lockstep::control {

// One pipeline slot's work in one step: a sequence's new tokens (its prompt, or its last sampled
// token) at KV position `position`; `reset` = a new sequence takes the slot (its KV cache is
// cleared first). `sample_index` = how many tokens the request has generated so far (the step
// index of model::SampleToken, so sampling is reproducible whatever ran before).
struct SlotWork {
  int32_t slot = 0;
  uint64_t request = 0;
  int64_t position = 0;
  std::vector<int32_t> tokens;
  bool reset = false;
  model::SamplingOptions sampling;
  int64_t sample_index = 0;
  // The sampling chip returns the logits with the token (SlotResult::logits); false: the token
  // alone (a vocabulary of floats less per token on the control plane).
  bool logits = true;
};

// Every chip of the plan gets the same Step. Slots without work sit idle for the step.
struct Step {
  int64_t index = 0;
  std::vector<SlotWork> work;  // at most one per slot, any order
};

// What the sampling chip returns for a slot that had work: the sampled token and the logits
// [vocab] it was drawn from (empty when the work did not ask for them).
struct SlotResult {
  int32_t slot = 0;
  uint64_t request = 0;
  int32_t token = 0;
  std::vector<float> logits;
};

// An entry of a self-clocked run's admission log (worker/run_control.h): what stage 0 needs (the
// tokens to prefill) and what the sampling chip needs (how to sample, when to stop, whether to
// return logits).
struct Admission {
  int64_t number = 0;  // its place in the log: 0, 1, 2, ... (the order of prefills)
  int64_t step = 0;    // the first step whose kind may be its prefill
  uint64_t request = 0;
  std::vector<int32_t> tokens;  // the prompt; a replay after a failover: prompt + generated
  int64_t generated = 0;        // tokens the request generated before (a replay): 0 usually
  int64_t max_new = 0;          // the request's tokens in all, > generated
  model::SamplingOptions sampling;
  bool logits = false;  // the sampling chip returns each token's logits

  friend bool operator==(const Admission& a, const Admission& b) {
    return a.number == b.number && a.step == b.step && a.request == b.request &&
           a.tokens == b.tokens && a.generated == b.generated && a.max_new == b.max_new &&
           a.sampling.temperature == b.sampling.temperature &&
           a.sampling.top_p == b.sampling.top_p && a.sampling.seed == b.sampling.seed &&
           a.logits == b.logits;
  }
};

// A token the sampling chip drew in a self-clocked run, as it reports it.
struct SampledToken {
  int32_t slot = 0;
  uint64_t request = 0;
  int64_t index = 0;  // the request's token index (model::SampleToken's step)
  int32_t token = 0;
  bool last = false;  // the request has all its tokens: its slot is free
  std::vector<float> logits;

  friend bool operator==(const SampledToken&, const SampledToken&) = default;
};

}  // namespace lockstep::control
