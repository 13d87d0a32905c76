@0xe87255608c68140f;
# A Lockstep plan: the partitioner's output (lockstep::partition::Plan), written by
# `lockstep plan -o PLAN` and read back by the scheduler, the simulator and `lockstep run`.
# A plan is self-contained: it carries the model spec, the whole topology (chip specs, chips,
# links with their ports, spares and down state) and the effective cost figures it was planned
# with, so a schedule compiled from it uses exactly the plan's figures. Files written before
# these fields existed (no `spec` / `system`) are rejected with a request to re-plan. One message per file, unpacked
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
  ringChainHops @20 :Int64;  # 0: one hop per collective step
  gatherHops @21 :Int32;     # 0 in older plans: read as 1
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

# partition::ModelSpec: every field the cost model and model execution use.
struct ModelSpec {
  name @0 :Text;
  modelType @1 :Text;
  hiddenSize @2 :Int64;
  intermediateSize @3 :Int64;
  numLayers @4 :Int64;
  numHeads @5 :Int64;
  numKvHeads @6 :Int64;
  headDim @7 :Int64;
  vocabSize @8 :Int64;
  tieWordEmbeddings @9 :Bool;
  qkvBias @10 :Bool;
  oBias @11 :Bool;
  mlpBias @12 :Bool;
  numExperts @13 :Int64;
  expertsPerToken @14 :Int64;
  ropeTheta @15 :Float64;
  ropeScaling @16 :RopeScaling;  # absent = no RoPE scaling
  rmsNormEps @17 :Float64;
  maxPositionEmbeddings @18 :Int64;
  slidingWindow @19 :Int64;      # 0 = full causal attention
  hasTorchDtype @20 :Bool;
  torchDtype @21 :Dtype;         # meaningful when hasTorchDtype
}

struct RopeScaling {
  type @0 :Text;
  factor @1 :Float64;
  lowFreqFactor @2 :Float64;
  highFreqFactor @3 :Float64;
  originalMaxPositionEmbeddings @4 :Int64;
}

# topology::ChipSpec.
struct ChipSpec {
  name @0 :Text;
  sramBytes @1 :Int64;
  peakOpsPerS @2 :List(Int64);  # indexed by Dtype
  memoryBandwidthBytesPerS @3 :Int64;
  clockHz @4 :Int64;
  ports @5 :Int32;
  linkBandwidthBytesPerS @6 :Int64;
  linkLatencyNs @7 :Int64;
  costParams @8 :List(NamedFigure);  # ChipSpec::cost_params, by name (empty in older plans)
}

struct NamedFigure {
  name @0 :Text;
  value @1 :Text;  # as written in the topology file
}

# One chip of the topology; its id is its position in Topology.chips.
struct Chip {
  node @0 :Int32;
  rack @1 :Int32;
  spec @2 :Int32;  # index into Topology.specs
  spare @3 :Bool;
  down @4 :Bool;
}

# One full-duplex link; its id is its position in Topology.links.
struct Link {
  aChip @0 :Int32;
  bChip @1 :Int32;
  aPort @2 :UInt16;
  bPort @3 :UInt16;
  down @4 :Bool;
  bandwidthBytesPerS @5 :Int64;  # per direction
  latencyNs @6 :Int64;
}

# topology::Topology, whole (about 32 bytes per link: a 145-rack system is ~2 MB).
struct Topology {
  name @0 :Text;
  specs @1 :List(ChipSpec);
  chips @2 :List(Chip);
  links @3 :List(Link);
}

# partition::ChipCostParams, as resolved for the plan's chip (never the "0 = derive" defaults'
# ambiguity: the values the partitioner used).
struct ChipCostParams {
  matrixEfficiency @0 :Float64;
  weightStreamBytesPerS @1 :Int64;
  weightStreamFraction @2 :Float64;
  vectorOpsPerS @3 :Int64;
  memoryEfficiency @4 :Float64;
  opOverheadNs @5 :Int64;
  matrixFillNs @6 :Int64;  # per dependent pass through the matrix units (0 in older plans)
  vectorFillNs @7 :Int64;  # per dependent pass through the vector units
  layerSyncNs @8 :Int64;   # per decoder layer
}

# partition::LinkCostParams.
struct LinkCostParams {
  linkEfficiency @0 :Float64;
  hopLatencyNs @1 :Int64;
  collectiveStepOverheadNs @2 :Int64;
}

# partition::RuntimeCostParams: what `lockstep run` adds to the schedule (0 in older plans).
struct RuntimeCostParams {
  controlHops @0 :Int64;
  controlHopNs @1 :Int64;
  stepOverheadNs @2 :Int64;
  cores @3 :Int64;
  # The weight bytes/s the host's cores stream together (0: none shared).
  sharedWeightStreamBytesPerS @4 :Int64;
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
  spec @10 :ModelSpec;
  system @11 :Topology;
  chipParams @12 :ChipCostParams;
  linkParams @13 :LinkCostParams;
  runtimeParams @14 :RuntimeCostParams;
  costParamsName @15 :Text;  # where the cost figures came from (a cost-parameters file's name)
  enum Objective {
    latency @0;
    throughput @1;
  }
}
