@0xe87255608c68140f;
# A Lockstep plan: the partitioner's output (lockstep::partition::Plan), written by
# `lockstep plan -o PLAN` and read back by the scheduler. One message per file, unpacked
# (capnp::messageToFlatArray). Encoding the same Plan always gives the same bytes; reading a file
# and writing it again reproduces it exactly. Sizes are bytes, times are integer nanoseconds;
# only the derived rates are floating point.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("lockstep::proto");

enum Dtype {
  fp32 @0;
  fp16 @1;
  bf16 @2;
  int8 @3;
  fp8 @4;
}

struct Workload {
  phase @0 :Phase;
  batch @1 :Int64;    # sequences per micro-batch
  context @2 :Int64;  # KV context per sequence
  dtype @3 :Dtype;
  enum Phase {
    decode @0;
    prefill @1;
  }
}

# One pipeline stage: units [firstUnit, endUnit) (0 = embedding, 1..L = layers, L+1 = LM head)
# on a tensor-parallel group of `tp` chips. Byte figures are per chip of the group.
struct Stage {
  index @0 :Int32;
  firstUnit @1 :Int64;
  endUnit @2 :Int64;
  hasEmbedding @3 :Bool;
  hasHead @4 :Bool;
  firstLayer @5 :Int64;
  endLayer @6 :Int64;
  tp @7 :Int32;
  chips @8 :List(Int32);
  weightBytes @9 :Int64;
  kvBytes @10 :Int64;
  activationBytes @11 :Int64;
  memoryBytes @12 :Int64;
  headroomBytes @13 :Int64;
  computeNs @14 :Int64;
  collectiveNs @15 :Int64;
  stageNs @16 :Int64;
  sendNs @17 :Int64;
  sendHops @18 :Int32;
  prefillNs @19 :Int64;
}

struct Prediction {
  tokenLatencyNs @0 :Int64;
  tokensPerSPerUser @1 :Float64;
  tokensPerS @2 :Float64;
  intervalNs @3 :Int64;
  microBatchesInFlight @4 :Int64;
  timeToFirstTokenNs @5 :Int64;
  bottleneckStage @6 :Int32;
  computeBoundNs @7 :Int64;
  weightStreamBoundNs @8 :Int64;
  linkBoundNs @9 :Int64;
}

struct Plan {
  model @0 :Text;
  topology @1 :Text;
  chip @2 :Text;
  objective @3 :Objective;
  workload @4 :Workload;
  promptLen @5 :Int64;
  chipsAvailable @6 :Int32;
  chipsUsed @7 :Int32;
  stages @8 :List(Stage);
  predicted @9 :Prediction;
  enum Objective {
    latency @0;
    throughput @1;
  }
}
