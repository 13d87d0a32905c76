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

}  // namespace lockstep::control
