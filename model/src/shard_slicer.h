// The one place that knows how tensors are read and which slice of which tensor a shard holds
// (internal header): LoadLlamaWeights, ExtractShard (whole weights in memory), LoadShard (a
// checkpoint) and GenerateShard (the seeded generator) all read through a TensorSource.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lockstep/model/safetensors.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/model/weight.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

// Where tensors are read from, by Hugging Face name. The projections of a source are all of one
// format; an int8 projection `name` has its scales under `name + "_scale"` (row-major
// [rows, ScalesPerRow]), read with Read.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual WeightFormat Format() const { return WeightFormat::kFp32; }
  // Elements [first, first + out.size()) of tensor `name` in row-major order, as fp32.
  virtual void Read(const std::string& name, int64_t first, std::span<float> out) const = 0;
  // The same of an int8 projection.
  virtual void ReadInt8(const std::string& name, int64_t first, std::span<int8_t> out) const;
  // Every slice of `name` has been read (a source may let go of its bytes).
  virtual void Done(const std::string& name) const { (void)name; }
};

// A checkpoint (checked by CheckLlamaWeights, which gave `format`).
class CheckpointSource : public TensorSource {
 public:
  CheckpointSource(const Checkpoint& checkpoint, WeightFormat format)
      : checkpoint_(checkpoint), format_(format) {}
  WeightFormat Format() const override { return format_; }
  void Read(const std::string& name, int64_t first, std::span<float> out) const override;
  void ReadInt8(const std::string& name, int64_t first, std::span<int8_t> out) const override;
  void Done(const std::string& name) const override;

 private:
  const Checkpoint& checkpoint_;
  WeightFormat format_;
};

// A vector tensor's elements [begin, begin + count).
std::vector<float> ReadVector(const TensorSource& source, const std::string& name, int64_t begin,
                              int64_t count);
// Rows [row_begin, row_begin + row_count) x columns [col_begin, col_begin + col_count) of the
// projection `name` of shape [rows, cols], in the source's format. An int8 column range must
// start on a block of 32 and end on one or at `cols`.
Weight ReadMatrix(const TensorSource& source, const std::string& name, int64_t rows, int64_t cols,
                  int64_t row_begin, int64_t row_count, int64_t col_begin, int64_t col_count);

// The shard of (stage, rank). Throws as ValidateStages and for a stage or rank out of range;
// the source's tensors are assumed to have the spec's shapes (checked by the caller).
ShardWeights SliceShard(const TensorSource& source, const partition::ModelSpec& spec,
                        const std::vector<StageUnits>& stages, int stage, int rank);

}  // namespace lockstep::model
