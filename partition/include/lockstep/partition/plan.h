// The partitioner: model x topology x workload x options -> Plan, or Error(kCannotFit) with
// numbers.
//
// A Plan splits the model's units — the embedding, each decoder layer, the LM head (with
// sampling) — into pipeline stages: contiguous unit ranges, each run by a tensor-parallel group
// of `tp` chips. Stages may be uneven; the embedding and the head may share a stage with layers
// or stand alone (vocab-parallel over their own group). The search is a dynamic program over
// (units covered, chips used) that tries every stage length and every allowed TP degree per
// stage (as Alpa's inter-operator pass does), minimising the objective:
//   latency    — per-token decode latency of one sequence (sum of stage times and transfers), ties
//                broken by the slowest stage (an even split, so sequences in flight overlap);
//   throughput — the pipeline's initiation interval (its slowest stage), ties broken by latency;
//                every stage then holds KV cache for `batch` sequences per stage in flight.
// Memory is checked per chip: weights + KV cache + activation buffers <= SRAM - reserve.
// TP degrees divide the node size (a TP group sits inside one fully connected node) or are
// whole multiples of it (whole nodes, ring all-reduce), and must satisfy
// TensorParallelProblem(). Chips are taken in id order (rack, node, chip), spares and down chips
// skipped, so consecutive stages sit on nearby chips.
//
// Pure function: no I/O, no clock; the same inputs give the same Plan (and the same JSON bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/partition/cost_model.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/topology/generators.h"
#include "lockstep/topology/topology.h"

namespace lockstep::partition {

enum class Objective { kLatency, kThroughput };
std::string_view ObjectiveName(Objective objective);  // "latency", "throughput"
std::optional<Objective> ParseObjective(std::string_view name);

struct PlanOptions {
  Objective objective = Objective::kLatency;
  // Decode workload: sequences per micro-batch, KV context per sequence, element type.
  // The phase is ignored (plans are for decode; prefill is predicted as time to first token).
  Workload workload{.phase = Phase::kDecode, .batch = 1, .context = 4096, .dtype = Dtype::kInt8};
  // Prompt length for the time-to-first-token prediction; 0 = workload.context.
  int64_t prompt_len = 0;
  // Overrides: a fixed TP degree for every stage, a fixed number of stages.
  std::optional<int> tp;
  std::optional<int> pp;
  // Throughput: the most micro-batches (each of workload.batch sequences) kept in flight; each
  // one's KV cache lives on every stage. 0 = no cap (the search tries 1, 2, 4, ...).
  int64_t max_micro_batches = 0;
  // An explicit layout instead of the search: (units, tp) per stage, in order, covering all
  // num_layers + 2 units. Memory is still checked (kCannotFit names the stage that overflows).
  std::vector<std::pair<int64_t, int>> layout;
  // Bytes of each chip's SRAM kept free for the program, buffers the cost model does not see
  // and fragmentation. 5% is a margin, not a measured figure.
  double sram_reserve_fraction = 0.05;
  // Chip and link effective figures; unset = CostParamsFor(chip) / LinkCostParamsFor(chip).
  std::optional<ChipCostParams> chip_params;
  std::optional<LinkCostParams> link_params;
  // The runtime's terms `lockstep run` adds (cost_model.h); unset = the chip's
  // (CostParamsForChip). They do not change the plan, only what `run` predicts from it.
  std::optional<RuntimeCostParams> runtime_params;
  // Where the figures come from (a cost-parameters file's name), recorded in the plan; empty =
  // the chip's built-in figures.
  std::string cost_params_name;
  // Hops assumed between consecutive stages while searching (placement is not known yet):
  // 2 = a local link plus a global one in a rack. Predictions use the placed chips' routes.
  int search_hops_between_stages = 2;
  // Hops assumed between ring neighbours in different nodes while searching (each node of the
  // group has one such neighbour; the ring's slowest chain passes each twice): 3 = a local
  // link, the link between the nodes, a local link. Predictions use the placed ring's routes.
  int search_cross_node_hops = 3;
};

struct StagePlan {
  int index = 0;
  // Units [first_unit, end_unit): unit 0 = embedding, 1..L = layers 0..L-1, L+1 = LM head.
  int64_t first_unit = 0;
  int64_t end_unit = 0;
  bool has_embedding = false;
  bool has_head = false;
  int64_t first_layer = 0;  // decoder layers [first_layer, end_layer)
  int64_t end_layer = 0;
  int tp = 1;
  std::vector<topology::ChipId> chips;  // the TP group, in rank order
  // Per chip of the group.
  int64_t weight_bytes = 0;
  int64_t kv_bytes = 0;
  int64_t activation_bytes = 0;
  int64_t memory_bytes = 0;    // the three above
  int64_t headroom_bytes = 0;  // SRAM - memory
  // One decode step of one micro-batch: ops + collectives; then the send to the next stage
  // (or, for the last stage, the token back to the first).
  int64_t compute_ns = 0;
  int64_t collective_ns = 0;
  int64_t stage_ns = 0;  // compute + collective
  int64_t send_ns = 0;
  // Links the send crosses: the most over the transfers to the next stage's ranks, as routed
  // (store-and-forward).
  int send_hops = 0;
  // An all-reduce over several nodes: the links its slowest chain of steps crosses, as routed
  // (a ring's: RingChainHops; a hierarchical one's: 2 + the farthest pair exchanging across
  // nodes; 0 = one per step, a group inside one node). The gather to rank 0
  // after sampling: its farthest rank's routed hops (1 inside a node).
  int64_t ring_chain_hops = 0;
  int gather_hops = 1;
  int64_t prefill_ns = 0;  // the prompt through this stage (ops + collectives + send)

  friend bool operator==(const StagePlan&, const StagePlan&) = default;
};

struct Prediction {
  int64_t token_latency_ns = 0;  // one decode step of one sequence through every stage and back
  double tokens_per_s_per_user = 0;
  double tokens_per_s = 0;  // all micro-batches in flight
  int64_t interval_ns = 0;  // slowest stage (stage + send): the pipeline's initiation interval
  int64_t micro_batches_in_flight = 1;
  int64_t time_to_first_token_ns = 0;
  int bottleneck_stage = 0;
  // Lower bounds for one token on the chips used: all FLOPs at every chip's effective matrix
  // rate; all weights streamed by every chip at once; links: the hops of one pass.
  int64_t compute_bound_ns = 0;
  int64_t weight_stream_bound_ns = 0;
  int64_t link_bound_ns = 0;

  friend bool operator==(const Prediction&, const Prediction&) = default;
};

// A Topology held by value inside a Plan. Equal when the contents are (see TopologyDifference),
// so Plan keeps a defaulted operator==.
struct TopologyValue {
  topology::Topology topology;
  friend bool operator==(const TopologyValue& a, const TopologyValue& b);
};

// A Plan is self-contained: besides the stages it carries what it was made from — the model
// spec, the whole topology (chip specs, chips, ports, links, spares, down chips and links) and
// the effective cost figures — so the scheduler, the simulator and `lockstep run` need only the
// plan, and a schedule compiled from it uses exactly the plan's figures.
struct Plan {
  std::string model;  // spec.name
  std::string topology;
  std::string chip;
  Objective objective = Objective::kLatency;
  Workload workload;
  int64_t prompt_len = 0;
  int chips_available = 0;
  int chips_used = 0;
  std::vector<StagePlan> stages;
  Prediction predicted;
  // What the plan was made from (MakePlan fills these).
  ModelSpec spec;
  TopologyValue system;
  ChipCostParams chip_params;  // resolved: PlanOptions::chip_params or CostParamsFor(chip)
  LinkCostParams link_params;  // resolved: PlanOptions::link_params or LinkCostParamsFor(chip)
  RuntimeCostParams runtime_params;  // resolved likewise
  std::string cost_params_name;      // PlanOptions::cost_params_name, or the chip's name

  friend bool operator==(const Plan&, const Plan&) = default;
};

// The topology a plan was made for (plan.system.topology).
inline const topology::Topology& PlanTopology(const Plan& plan) { return plan.system.topology; }

// Empty when the two describe the same system; otherwise one line naming the first difference
// ("chip 17 is down in the plan's topology, up in 'rack'", "142 links vs 144"). `a` is called
// the plan's, `b` the given one, in the message.
std::string TopologyDifference(const topology::Topology& a, const topology::Topology& b);
// Same for model specs; names the first differing field ("num_layers 80 vs 32"). The display
// name is not compared (one config read from two paths has two names).
std::string ModelSpecDifference(const ModelSpec& a, const ModelSpec& b);

// Plans `spec` on `topo`. Throws Error(kInvalidInput) for bad options (tp that the model cannot
// use, batch < 1, ...) and Error(kCannotFit) with what the model needs, what the topology has
// and the smallest chip count that would fit.
Plan MakePlan(const ModelSpec& spec, const topology::Topology& topo, const PlanOptions& options);

// An alternative the search considered: the best plan with every stage at one TP degree (or
// why there is none), and why it lost to `chosen`.
struct Alternative {
  int tp = 1;
  bool fits = false;
  int chips_used = 0;
  int stages = 0;
  Prediction predicted;
  std::string why;  // "slower: 3.61 ms per token vs 3.18 ms", "does not fit: ...", "chosen"
};

// For --explain: one alternative per usable TP degree, best first by the objective. Same
// options as MakePlan (its tp is ignored). Pure, deterministic.
std::vector<Alternative> ExplainAlternatives(const ModelSpec& spec, const topology::Topology& topo,
                                             const PlanOptions& options, const Plan& chosen);

// Where one stage's decode time goes (--explain): the stage's ops, collectives and its send to
// the next stage (stage_ns + send_ns), split by what bounds each part. An op counts its fixed
// latency (TimeOp's fixed_ns) as `fixed` and the rest as its bound (compute, weight stream or
// memory); a collective or send counts hop latencies as `link_latency`, payload at the link
// rate as `link_transfer`, per-step overheads as `fixed`. total() == stage_ns + send_ns.
struct TimeShares {
  int64_t compute_ns = 0;
  int64_t weight_stream_ns = 0;
  int64_t memory_ns = 0;
  int64_t link_transfer_ns = 0;
  int64_t link_latency_ns = 0;
  int64_t fixed_ns = 0;
  int64_t total() const {
    return compute_ns + weight_stream_ns + memory_ns + link_transfer_ns + link_latency_ns +
           fixed_ns;
  }
  TimeShares& operator+=(const TimeShares& o);
};
// Throws Error (kInvalidInput) when `stage` is not a stage of `plan`.
TimeShares StageShares(const Plan& plan, int stage);

// What `lockstep run` adds per decode step to the schedule's token latency for this plan's
// runtime: control_hops x control_hop_ns + step_overhead_ns (runtime_params).
int64_t RuntimeTokenNs(const Plan& plan);
// The decode step `lockstep run` is predicted to take for this plan: the compiled schedule's
// step (`schedule_step_ns`: from the step's first instruction to its last, every slot's token),
// at least `compute_ns` (the compute and reduce time of every chip in that step) shared over
// the cores the workers run on (runtime_params.cores; 0 = a core per chip, no such bound) and
// at least that compute at the rate the cores stream weights together (runtime_params.
// shared_weight_stream_bytes_per_s over chip_params.weight_stream_bytes_per_s; 0 = no such
// bound), plus RuntimeTokenNs. The schedule's step and compute are those of the sequences in
// flight: a slot with no sequence computes nothing. Throws Error (kInvalidInput) for a
// negative time.
int64_t RuntimeStepNs(const Plan& plan, int64_t schedule_step_ns, int64_t compute_ns);

// Capacity planning: the smallest standard system of `chip` — one node, one rack, then 2, 3, ...
// racks (topology::GenerateSystem with `shape`) up to the largest the chip allows — whose plan
// reaches `target_tokens_per_s` aggregate tokens/s. Systems that cannot fit the model are
// skipped. Throws Error(kCannotFit) with the best rate reached when none does.
struct CapacityResult {
  int racks = 0;  // 0 = a single node
  topology::Topology topology;
  Plan plan;
};
CapacityResult PlanCapacity(const ModelSpec& spec, const topology::ChipSpec& chip,
                            const topology::RackShape& shape, const PlanOptions& options,
                            double target_tokens_per_s);

// The plan as one JSON object (stable key order, fixed formatting): same plan, same bytes.
std::string PlanToJson(const Plan& plan);

// The plan in the binary format of proto/plan.capnp. Deterministic: the same plan gives the
// same bytes, and SerializePlan(ParsePlan(b)) == b for any b SerializePlan produced.
std::string SerializePlan(const Plan& plan);
// Reads SerializePlan's bytes. Throws Error (kInvalidInput) naming `source` when the bytes are
// not a plan message (truncated, garbage, an unknown enum value, an embedded topology that
// does not hold together), and "<source> was written without its model/topology; re-run
// lockstep plan" for a plan from before plans carried them.
Plan ParsePlan(std::string_view bytes, const std::string& source);
// A model spec alone in the same binary format (the spec of proto/plan.capnp as its own
// message): what the control channel ships to workers, so plans and workers share one codec.
// ParseModelSpecBytes throws Error (kInvalidInput) naming `source` for bytes that are not such
// a message or not a valid model.
std::string SerializeModelSpec(const ModelSpec& spec);
ModelSpec ParseModelSpecBytes(std::string_view bytes, const std::string& source);
// File forms: a path ending in ".json" holds PlanToJson (write only); anything else the binary
// form. Throw Error (kNotFound) when the file cannot be opened.
void WritePlanFile(const std::string& path, const Plan& plan);
Plan ReadPlanFile(const std::string& path);

// Structural problems of a plan (each unit exactly once and in order, memory within SRAM, TP
// divisibility, chips distinct, usable and not spares); empty when valid.
std::vector<std::string> VerifyPlan(const Plan& plan, const ModelSpec& spec,
                                    const topology::Topology& topo);

}  // namespace lockstep::partition
