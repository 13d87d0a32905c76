// The one place that knows how tensors are read and which slice of which tensor a shard holds
// (internal header): LoadLlamaWeights, ExtractShard (whole weights in memory), LoadShard (a
// checkpoint) and GenerateShard (the seeded generator) all read through a TensorSource.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "lockstep/model/llama_weights.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/model/weight.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

// Where tensors are read from, by Hugging Face name. An int8 projection `name` has its scales
// under `name + "_scale"` (row-major [rows, ScalesPerRow]), read with Read.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // The format projection `name` is stored in.
  virtual WeightFormat Format(const std::string& name) const {
    (void)name;
    return WeightFormat::kFp32;
  }
  // Elements [first, first + out.size()) of tensor `name` in row-major order, as fp32.
  virtual void Read(const std::string& name, int64_t first, std::span<float> out) const = 0;
  // The same of an int8 projection.
  virtual void ReadInt8(const std::string& name, int64_t first, std::span<int8_t> out) const;
  // Every slice of `name` has been read (a source may let go of its bytes).
  virtual void Done(const std::string& name) const { (void)name; }
};

// A checkpoint (checked by CheckLlamaWeights, which gave `format`): its I8 projections are in
// `format`, the others fp32.
class CheckpointSource : public TensorSource {
 public:
  CheckpointSource(const Checkpoint& checkpoint, WeightFormat format)
      : checkpoint_(checkpoint), format_(format) {}
  WeightFormat Format(const std::string& name) const override;
  void Read(const std::string& name, int64_t first, std::span<float> out) const override;
  void ReadInt8(const std::string& name, int64_t first, std::span<int8_t> out) const override;
  void Done(const std::string& name) const override;

 private:
  const Checkpoint& checkpoint_;
  WeightFormat format_;
};

// The tensors of whole weights in memory, by name (projections fp32 or int8). Holds pointers
// into `weights`, which must outlive it.
class MemorySource : public TensorSource {
 public:
  MemorySource(const LlamaWeights& weights, const partition::ModelSpec& spec);
  WeightFormat Format(const std::string& name) const override;
  void Read(const std::string& name, int64_t first, std::span<float> out) const override;
  void ReadInt8(const std::string& name, int64_t first, std::span<int8_t> out) const override;

 private:
  std::map<std::string, const std::vector<float>*> vectors_;
  std::map<std::string, const Weight*> matrices_;
};

// A vector tensor's elements [begin, begin + count).
std::vector<float> ReadVector(const TensorSource& source, const std::string& name, int64_t begin,
                              int64_t count);
// Rows [row_begin, row_begin + row_count) x columns [col_begin, col_begin + col_count) of the
// projection `name` of shape [rows, cols], in the format the source stores it in. An int8 column
// range must start on a block of 32 and end on one or at `cols`.
Weight ReadMatrix(const TensorSource& source, const std::string& name, int64_t rows, int64_t cols,
                  int64_t row_begin, int64_t row_count, int64_t col_begin, int64_t col_count);

// The shard of (stage, rank), for dense and mixture-of-experts models alike (the public entry
// points refuse MoE, which only the in-process ShardedModel runs sharded). Throws as
// ValidateStages and for a stage or rank out of range; the source's tensors are assumed to have
// the spec's shapes (checked by the caller).
ShardWeights SliceShard(const TensorSource& source, const partition::ModelSpec& spec,
                        const std::vector<StageUnits>& stages, int stage, int rank);

}  // namespace lockstep::model
