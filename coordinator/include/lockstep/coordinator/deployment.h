// What the coordinator deploys: for every chip a plan uses, its place (stage, rank), its links,
// its program from the static global schedule and its weight shard as bytes — everything a
// worker needs, computed once, before any worker starts. `MakeDeployment` is a pure function of
// its inputs (no I/O, no clock), so two runs deploy the same bytes.
//
// The schedule is compiled for one token and `slots` sequences: the per-token period every step
// repeats (schedule sequence m = pipeline slot m), as worker/chip_runner.h expects. Chips that
// only forward (stage -1) are deployed too, with an empty shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/control/messages.h"
#include "lockstep/control/settings.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/model/shard_loader.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/topology/host.h"
#include "lockstep/topology/topology.h"
#include "lockstep/transport/message.h"

namespace lockstep::coordinator {

struct ChipDeployment {
  uint32_t chip = 0;
  int stage = -1;  // -1: forwards only
  int rank = -1;
  std::vector<transport::LinkSpec> links;  // the links its program uses, by link id
  schedule::ChipProgram program;
  std::vector<topology::ChipId> group;        // its stage's TP group in rank order
  std::vector<schedule::LinkTable> incoming;  // schedule::IncomingTables(schedule, chip)
  std::vector<std::byte> shard;  // model::ShardToBytes of its shard; empty when forwarding only
  // Or where its worker reads the shard itself (model::EncodeShardSource), shipping nothing.
  std::string shard_source;
  // A self-clocked run: one prefill program per prompt bucket (Deployment::prompt_buckets), its
  // entry of schedule::PrefillPass of the bucket's compile (empty when it has no part in it).
  std::vector<control::AssignmentMsg::Prefill> prefill;
  // Which of the run's used chips this is (0, 1, ...): the worker pins to core `index % cores`
  // of its host, so the chips of a small plan spread over every core even on a 2-core machine.
  int index = 0;
  // The CPUs (OS indices) its worker pins to, from a pin map (lockstep run --pin-map); empty:
  // core `index % cores` of the worker's host, as above.
  std::vector<int> cpus;
};

struct Deployment {
  partition::ModelSpec spec;
  uint64_t schedule_id = 1;
  int32_t slots = 1;
  int64_t max_positions = 0;               // prompt + max_new limit per request
  int64_t predicted_token_latency_ns = 0;  // the plan's prediction for the topology's chip
  int64_t schedule_token_latency_ns = 0;   // the compiled schedule's
  // One step of the compiled schedule (every slot's token): its first instruction to its last,
  // and the compute and reduce time of all chips in it (partition::RuntimeStepNs).
  int64_t schedule_step_ns = 0;
  int64_t schedule_compute_ns = 0;
  uint32_t sampling_chip = 0;  // last stage, rank 0: where results come from
  control::TransportSettings transport;
  std::vector<ChipDeployment> chips;  // by chip id
  // A self-clocked run (DeployOptions::prompt_buckets given; else empty and 0): the buckets whose
  // prefill programs every chip holds, the decode period's repeat interval and makespan (the
  // modulo compile), and how many steps ahead a step's kind is announced.
  std::vector<int64_t> prompt_buckets;
  int64_t repeat_ns = 0;
  int64_t decode_makespan_ns = 0;
  int32_t lookahead = 1;
  // The link figures the schedule was compiled with: the plan's (partition::Plan::link_params).
  partition::LinkCostParams link_params;

  uint64_t shard_bytes() const;
};

struct DeployOptions {
  int32_t slots = 0;          // pipeline slots (sequences in flight); 0 = the number of stages
  int64_t max_positions = 0;  // 0 = spec.max_position_embeddings
  control::TransportSettings transport;
  // (The schedule is compiled with the plan's own chip and link figures, plan.chip_params and
  // plan.link_params, as the plan was made: what it predicts is what the chips are held to.)
  // A self-clocked run (ChipRunner::Run): the prompt buckets to compile prefill programs for
  // (ascending; a prompt runs in the smallest that holds it), the most tokens per prefill chunk,
  // and the kind lookahead. Empty: no prefill programs; the decode program is then the plain
  // compile's, run step by step under the coordinator's Steps.
  std::vector<int64_t> prompt_buckets;
  int64_t prefill_chunk = 2048;
  int32_t lookahead = 1;
};

// Compiles the schedule of `plan`, checks it with the independent validator (CheckSchedule) and
// only then cuts every used chip's shard out of `weights`. Throws Error (kInvalidInput) for a plan
// that does not belong to `topo` (chip out of range or down, another topology name) or cannot run
// `spec`, a schedule the validator refuses, and weights that do not match `spec`.
Deployment MakeDeployment(const partition::Plan& plan, const partition::ModelSpec& spec,
                          const topology::Topology& topo, const model::LlamaWeights& weights,
                          const DeployOptions& options);

// The same, with no weights in this process: each used chip gets the source of its shard
// (`weights`' checkpoint or seed, the plan's stages, its stage and rank) for its worker to load
// itself — every worker reads only its slices, all at once. `weights.checkpoint` must be a path
// the workers can open (absolute) and is checked against `spec` here, from its headers.
Deployment MakeDeployment(const partition::Plan& plan, const partition::ModelSpec& spec,
                          const topology::Topology& topo, const model::ShardSource& weights,
                          const DeployOptions& options);

// Chip `c`'s shard built here from its source and carried as bytes (for a worker that cannot open
// the checkpoint: another host); nothing for a chip that already has its bytes.
void MaterializeShard(const partition::ModelSpec& spec, ChipDeployment& c);

// One decode step of `plan` with `sequences` sequences in flight, compiled for them with the
// plan's figures as a deployment is: its first instruction to its last, and the compute and reduce
// time of all chips in it — what partition::RuntimeStepNs predicts a run's step from. A
// deployment's slots with no sequence compute nothing, so a run with fewer sequences than slots
// takes this step, not the deployment's (schedule_step_ns: every slot's token).
struct ScheduleStep {
  int64_t step_ns = 0;
  int64_t compute_ns = 0;
};
ScheduleStep InFlightStep(const partition::Plan& plan, const partition::ModelSpec& spec,
                          const topology::Topology& topo, int32_t sequences);

// The contract is checked before anything moves: schedule::Validate on `schedule` against
// `topo` (with the link figures it was compiled with). Throws Error (kInvalidInput) whose message
// is "the compiled schedule fails validation (nothing deployed): " and the validator's first
// finding, which names the chip, the link and the step, and how many more it found.
void CheckSchedule(const schedule::GlobalSchedule& schedule, const topology::Topology& topo,
                   const partition::LinkCostParams& link_params);

}  // namespace lockstep::coordinator

namespace lockstep::coordinator {

// The most link hops one step's work passes through in a row: the longest chain of the
// schedule's messages where each waits for the one before (a Recv or Forward needs its sender's
// Send or Forward; an instruction needs its deps). Each link traversal is one hop, so a message
// forwarded by an intermediate chip counts twice. With the one-way latency of a link this is
// the communication floor of a step (BENCHMARKS.md "Distributed decode"). The coordinator's own
// round trip (Step out, result back) is not included. Throws Error (kInternal) when the
// programs' messages form a cycle or a Recv names a message no program sends.
int64_t CriticalHops(const Deployment& d);

}  // namespace lockstep::coordinator
