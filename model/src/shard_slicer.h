// The one place that knows which slice of which tensor a shard holds (internal header):
// ExtractShard (whole weights in memory), LoadShard (a checkpoint) and GenerateShard (the seeded
// generator) all cut through SliceShard, reading from a TensorSource.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "lockstep/model/stage_shard.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

// Where tensors are read from, by Hugging Face name, as fp32.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // Elements [first, first + out.size()) of tensor `name` in row-major order.
  virtual void Read(const std::string& name, int64_t first, std::span<float> out) const = 0;
  // Every slice of `name` has been read (a source may let go of its bytes).
  virtual void Done(const std::string& name) const { (void)name; }
};

// The shard of (stage, rank). Throws as ValidateStages and for a stage or rank out of range;
// the source's tensors are assumed to have the spec's shapes (checked by the caller).
ShardWeights SliceShard(const TensorSource& source, const partition::ModelSpec& spec,
                        const std::vector<StageUnits>& stages, int stage, int rank);

}  // namespace lockstep::model
