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
#include <string>
#include <string_view>
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

// Where a shard comes from when its worker builds it itself (the deployment path: a worker on
// the checkpoint's host maps the file and reads only its slices, in parallel with the others,
// instead of receiving bytes the coordinator cut and shipped): a checkpoint by path, or the
// seeded generator, plus the stages of the plan and the worker's place in them.
struct ShardSource {
  std::string checkpoint;  // a .safetensors file, an index .json or its folder; empty: `seed`
  uint64_t seed = 0;
  std::vector<StageUnits> stages;
  int stage = 0;
  int rank = 0;
};

// A ShardSource as a short JSON text (the same bytes for the same source) and back.
// DecodeShardSource throws Error (kInvalidInput) naming the field for text that is not one.
std::string EncodeShardSource(const ShardSource& source);
ShardSource DecodeShardSource(std::string_view text);

// The shard a source names: LoadShard of the opened checkpoint or GenerateShard of the seed
// (so the same bits as ExtractShard of the whole model). Throws as they do, and Error naming the
// path for a checkpoint that cannot be opened.
ShardWeights LoadShard(const ShardSource& source, const partition::ModelSpec& spec);

}  // namespace lockstep::model
