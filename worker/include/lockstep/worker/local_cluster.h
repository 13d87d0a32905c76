// LocalCluster: every chip of a plan as a thread of this process, each a ChipRunner over the
// `sim` or `inproc` transport, fed by one Batcher. It is the in-process runtime (`lockstep run
// --transport sim|inproc`) and the reference harness for the distributed one: the same programs,
// shards and steps as worker processes get.
//
// Construction compiles the schedule (tokens = 1, sequences = slots), extracts every shard, opens
// every chip's links (Transport::OpenChip, one thread per chip) and starts the chip threads, which
// wait for steps. Generate() submits requests and runs steps until all have finished: each step
// goes to every chip at once, the sampling chip's results go back to the batcher.
//
// Thread-safety: one thread calls Generate / Close. If a chip fails, Generate throws that chip's
// Error after every chip thread has stopped (the cluster is then closed).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/model/llama_weights.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/topology/topology.h"
#include "lockstep/transport/endpoint.h"
#include "lockstep/worker/batcher.h"

namespace lockstep::worker {

struct LocalClusterOptions {
  std::string transport = "inproc";  // sim or inproc (threads of one process)
  int32_t slots = 0;                 // pipeline slots; 0 = the number of stages
  int64_t max_positions = 0;         // prompt + max_new limit; 0 = spec.max_position_embeddings
  uint64_t schedule_id = 1;
  transport::Millis timeout{30000};  // per Send/Recv and for opening the links
  // The link figures the schedule is compiled with: they decide, among others, which all-reduce
  // each collective runs (partition::ChooseAllReduce).
  partition::LinkCostParams link_params;
};

struct ClusterStats {
  int64_t steps = 0;
  int64_t tokens = 0;  // tokens generated
  int chips = 0;       // chips running (including forward-only ones)
};

class LocalCluster {
 public:
  // Throws Error (kInvalidInput) for a plan that does not belong to `topo` or cannot run `spec`,
  // weights that do not match `spec`, or an unknown transport.
  LocalCluster(const partition::Plan& plan, const partition::ModelSpec& spec,
               const topology::Topology& topo, const model::LlamaWeights& weights,
               LocalClusterOptions options = {});
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // Runs every request to completion; results in the order of `requests`.
  std::vector<Finished> Generate(const std::vector<Request>& requests);

  const schedule::GlobalSchedule& schedule() const;
  const ClusterStats& stats() const;
  // Stops the chip threads and closes every link. Idempotent; the destructor calls it.
  void Close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::worker
