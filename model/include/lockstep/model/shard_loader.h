// One chip's shard built straight from where the model's weights are — a checkpoint on disk or
// the seeded generator — reading only the slices that shard holds (stage_shard.h says which), so
// no process ever holds the whole model: a worker loads its own shard from the mapped checkpoint,
// converting each slice from its stored dtype (fp32, fp16, bf16) to fp32 as it copies it, and the
// coordinator, when it must ship a shard, builds one at a time.
//
// The result is bit for bit ExtractShard of the whole model loaded as fp32 (LoadLlamaWeights,
// GenerateLlamaWeights): widening is exact, so a bf16 checkpoint and its fp32 widening give the
// same shard and the same logits.
//
// Thread-safety: pure functions; a Checkpoint may be shared by threads loading different shards.
#pragma once

#include <cstdint>
#include <vector>

#include "lockstep/model/safetensors.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

// The shard of (stage, rank) read from `checkpoint`. Checks the checkpoint against `spec` first
// (CheckLlamaWeights: every tensor's name, shape and dtype, from the headers alone), and throws
// as ExtractShard for stages or a rank that do not fit. The checkpoint's pages of each tensor are
// released once its slice is copied (SafetensorsFile::Release).
ShardWeights LoadShard(const Checkpoint& checkpoint, const partition::ModelSpec& spec,
                       const std::vector<StageUnits>& stages, int stage, int rank);

// The shard of (stage, rank) of the generated weights of `seed` (GeneratedWeight of each element
// it holds, nothing else computed).
ShardWeights GenerateShard(const partition::ModelSpec& spec, uint64_t seed,
                           const std::vector<StageUnits>& stages, int stage, int rank);

}  // namespace lockstep::model
