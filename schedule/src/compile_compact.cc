// CompileCompact(): each phase's pass for slot 0, list-scheduled against reservation tables folded
// modulo the slot stride, then the phases placed one after another on the run's timeline.
#include <algorithm>
#include <map>

#include "lockstep/common/error.h"
#include "lockstep/schedule/compact.h"
#include "pass_builder.h"
#include "strategies.h"

namespace lockstep::schedule {
namespace {

using partition::OpCost;
using partition::OpKind;

struct OpEntry {
  OpCost cost;
  int64_t ns = 0;
  // The all-reduce after the op (allreduce_bytes > 0, tp > 1).
  partition::AllReduceAlgorithm allreduce = partition::AllReduceAlgorithm::kDirect;
};

// One stage's ops on one chip of its TP group.
struct StageCode {
  const partition::StagePlan* plan = nullptr;
  std::vector<OpEntry> ops;          // a decode token
  std::vector<OpEntry> prefill_ops;  // the prompt's last chunk (when compiled)
  std::vector<OpEntry> chunk_ops;    // the other chunks: prefill_ops without the LM head
  bool direct = true;                // the group is fully connected
  int node_size = 0;                 // whole nodes of this many chips (HierarchicalNodeSize)
};

bool FullyConnected(const topology::Topology& topo, const std::vector<ChipId>& chips) {
  for (size_t i = 0; i < chips.size(); ++i) {
    for (size_t j = i + 1; j < chips.size(); ++j) {
      bool joined = false;
      for (const topology::Adjacent& a : topo.Neighbors(chips[i])) joined |= a.peer == chips[j];
      if (!joined) return false;
    }
  }
  return true;
}

// What a pass needs besides the stride.
struct PassInputs {
  const topology::Topology* topo = nullptr;
  partition::LinkCostParams link_params;
  const std::vector<StageCode>* stages = nullptr;
  int64_t overhead = 0;          // collective step overhead
  int64_t act_bytes = 0;         // a decode activation
  int64_t prompt_act_bytes = 0;  // a prompt chunk's activation
  int64_t token_bytes = 0;       // the sampled tokens of a micro-batch
};

struct Pass {
  PassBuilder::Result built;
  int64_t token_latency = 0;  // slot 0's token back at every rank of stage 0 (0: no token)
  int64_t span = 0;           // the longest first start .. last end of the pass on any chip
};

// One pass of `kind` (slot 0) with every reservation folded modulo `period`.
Pass EmitPass(const PassInputs& in, PhaseKind kind, int32_t token, int64_t period,
              RouteCache& routes) {
  const std::vector<StageCode>& stages = *in.stages;
  PassBuilder b(*in.topo, in.link_params, routes, period);
  b.step.token = token;
  b.step.sequence = 0;
  RankDeps data(stages.front().plan->chips.size());
  Pass out;
  for (size_t s = 0; s < stages.size(); ++s) {
    const StageCode& sc = stages[s];
    const std::vector<ChipId>& chips = sc.plan->chips;
    b.step.stage = static_cast<int32_t>(s);
    size_t active = chips.size();
    const std::vector<OpEntry>& ops = kind == PhaseKind::kDecode        ? sc.ops
                                      : kind == PhaseKind::kPrefillLast ? sc.prefill_ops
                                                                        : sc.chunk_ops;
    for (const OpEntry& e : ops) {
      b.step.layer = static_cast<int32_t>(e.cost.layer);
      for (size_t r = 0; r < active; ++r) {
        data[r] = {b.Compute(chips[r], data[r], e.ns, InstrKind::kCompute, Tag::kOp, e.cost.kind)};
      }
      if (chips.size() > 1 && e.cost.allreduce_bytes > 0 && active == chips.size()) {
        AllReduceFor(e.allreduce)(b, chips, data, e.cost.allreduce_bytes, in.overhead);
      }
      if (chips.size() > 1 && e.cost.gather_bytes > 0) {
        GatherToRankZero(b, chips, data, e.cost.gather_bytes, in.overhead, e.cost.kind);
        active = 1;
      }
    }
    b.step.layer = -1;
    const bool last = s + 1 == stages.size();
    if (last && kind == PhaseKind::kPrefillChunk) break;  // no token before the last chunk
    if (last) {
      HandOff(b, chips, 1, stages.front().plan->chips, data, in.token_bytes, Tag::kToken);
      for (size_t r = 0; r < data.size(); ++r) {
        out.token_latency =
            std::max(out.token_latency, b.ReadyAt(stages.front().plan->chips[r], data[r]));
      }
    } else {
      RelayActivations(b, chips, active, stages[s + 1].plan->chips, data,
                       kind == PhaseKind::kDecode ? in.act_bytes : in.prompt_act_bytes,
                       Tag::kActivation);
    }
  }
  out.built = b.Finish();
  for (const auto& [chip, body] : out.built.bodies) {
    int64_t first = body.front().start_ns, last = 0;
    for (const Instruction& x : body) last = std::max(last, x.end_ns);
    out.span = std::max(out.span, last - first);
  }
  return out;
}

// The stride a phase must keep so that a slot's next pass follows this one: the token back
// before the next decode token; a chip done with a chunk before the next chunk (every pass).
int64_t Need(const Pass& p, PhaseKind kind, int64_t passes) {
  if (kind == PhaseKind::kDecode) return std::max(p.token_latency, p.span);
  return passes > 1 ? p.span : 0;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The shortest slot stride from `stride` upward (by the busiest resource, the pass's own need)
// at which every instruction finds a folded gap and a pass still fits in slots x stride; at the
// latest the pass's makespan, where nothing folds and the free schedule is valid.
std::pair<int64_t, Pass> ShortestStride(const PassInputs& in, PhaseKind kind, int32_t token,
                                        int64_t passes, int32_t slots, int64_t stride,
                                        const Pass& free, RouteCache& routes) {
  for (int attempt = 0; attempt < 12 && stride < free.built.makespan; ++attempt) {
    Pass p = EmitPass(in, kind, token, stride, routes);
    const int64_t need = Need(p, kind, passes);
    if (!p.built.unplaced && need <= slots * stride) return {stride, std::move(p)};
    stride =
        std::max(p.built.unplaced ? stride + stride / 32 + 1 : stride + 1, CeilDiv(need, slots));
  }
  return {std::max({stride, free.built.makespan, CeilDiv(Need(free, kind, passes), slots)}), free};
}

// Compiles one phase. Passes that repeat (decode tokens, prompt chunks) take the shortest
// stride: a slot's next pass comes every slots x stride. The prompt's last chunk runs once per
// slot: its stride trades slot 0's time to first token (a short stride folds the pass onto
// itself and delays it) against the later slots' (each starts a stride after the previous), so
// it takes whichever of the shortest stride and the longest resource span (nothing of the pass
// folds onto itself) gives the lower mean time to first token.
std::pair<Phase, Pass> CompilePhase(const PassInputs& in, PhaseKind kind, int32_t token,
                                    int64_t passes, int32_t slots, RouteCache& routes) {
  Phase ph;
  ph.kind = kind;
  ph.first_token = token;
  ph.passes = passes;
  ph.slots = slots;
  const Pass free = EmitPass(in, kind, token, ModuloTimeline::kUnbounded, routes);
  const int64_t need = CeilDiv(Need(free, kind, passes), slots);
  auto [stride, chosen] =
      ShortestStride(in, kind, token, passes, slots,
                     std::max<int64_t>({1, free.built.busy_max, need}), free, routes);
  if (kind == PhaseKind::kPrefillLast) {
    const int64_t wide = std::max<int64_t>({1, free.built.span_max, need});
    if (wide > stride) {
      auto [w, alt] = ShortestStride(in, kind, token, passes, slots, wide, free, routes);
      auto mean_ttft = [&](int64_t s, const Pass& p) {
        return 2 * p.token_latency + (slots - 1) * s;  // x 2: integer
      };
      if (mean_ttft(w, alt) < mean_ttft(stride, chosen)) {
        stride = w;
        chosen = std::move(alt);
      }
    }
  }
  ph.slot_ns = stride;
  ph.messages = chosen.built.messages;
  ph.token_latency_ns = chosen.token_latency;
  return {ph, std::move(chosen)};
}

}  // namespace

CompactSchedule CompileCompact(const partition::Plan& plan, const partition::ModelSpec& spec,
                               const topology::Topology& topo, const ScheduleOptions& options) {
  if (options.tokens < 1) throw InvalidInput("schedule: tokens must be >= 1");
  if (options.prompt_len < 0) throw InvalidInput("schedule: prompt_len must be >= 0");
  if (options.sequences < 0) throw InvalidInput("schedule: sequences must be >= 0");
  if (options.sequences > (int64_t{1} << 20)) {
    throw InvalidInput("schedule: sequences must be <= 1048576");
  }
  if (plan.stages.empty()) throw InvalidInput("schedule: the plan has no stages");
  for (const partition::StagePlan& st : plan.stages) {
    if (st.chips.empty() || static_cast<int>(st.chips.size()) != st.tp) {
      throw InvalidInput("schedule: stage " + std::to_string(st.index) + " has " +
                         std::to_string(st.chips.size()) + " chips for tp " +
                         std::to_string(st.tp));
    }
    for (ChipId c : st.chips) {
      if (!topo.has_chip(c) || topo.chip(c).down) {
        throw InvalidInput("schedule: stage " + std::to_string(st.index) + " uses chip " +
                           std::to_string(c) + ", which " + topo.name() +
                           (topo.has_chip(c) ? " has marked down" : " does not have"));
      }
    }
  }
  const topology::ChipSpec& chip = topo.spec_of(plan.stages.front().chips.front());
  const partition::ChipCostParams cp =
      options.chip_params ? *options.chip_params : partition::CostParamsFor(chip);
  partition::Workload w = plan.workload;
  w.phase = partition::Phase::kDecode;
  if (options.prefill_chunk < 1) throw InvalidInput("schedule: prefill_chunk must be >= 1");
  const int64_t prompt_len = options.prompt_len > 0
                                 ? options.prompt_len
                                 : (plan.prompt_len > 0 ? plan.prompt_len : w.context);
  const int64_t bucket = options.prefill ? PromptBucket(prompt_len, options.prompt_buckets) : 0;
  const int64_t chunks =
      options.prefill ? (bucket + options.prefill_chunk - 1) / options.prefill_chunk : 0;
  partition::Workload pw = w;  // one chunk of the prompt
  pw.phase = partition::Phase::kPrefill;
  pw.context = options.prefill ? (bucket + chunks - 1) / chunks : prompt_len;
  const int64_t overhead = options.link_params.collective_step_overhead_ns;

  CompactSchedule out;
  out.model = plan.model;
  out.topology = topo.name();
  out.plan_digest = PlanDigest(plan);
  out.tokens = options.tokens;
  out.batch = w.batch;
  out.stages = static_cast<int>(plan.stages.size());

  std::vector<StageCode> stages;
  for (const partition::StagePlan& st : plan.stages) {
    StageCode sc;
    sc.plan = &st;
    sc.direct = FullyConnected(topo, st.chips);
    sc.node_size = sc.direct ? 0 : partition::HierarchicalNodeSize(spec, topo, st.chips);
    auto build = [&](const partition::Workload& wl) {
      std::vector<OpEntry> list;
      auto add = [&](const std::vector<OpCost>& ops) {
        const topology::ChipSpec& chip_spec = topo.spec_of(st.chips.front());
        for (const OpCost& op : ops) {
          const partition::AllReduceAlgorithm allreduce = partition::ChooseAllReduce(
              op.allreduce_bytes, st.tp, sc.direct, partition::OneShotAllowed(spec, st.tp, op.kind),
              chip_spec.link_bandwidth_bytes_per_s, chip_spec.link_latency_ns, options.link_params,
              sc.node_size);
          list.push_back({op, partition::TimeOp(op, wl.dtype, chip_spec, cp).ns, allreduce});
        }
      };
      if (st.has_embedding) add(partition::EmbeddingOps(spec, wl, st.tp));
      for (int64_t l = st.first_layer; l < st.end_layer; ++l) {
        add(partition::LayerOps(spec, wl, st.tp, l));
      }
      if (st.has_head) add(partition::HeadOps(spec, wl, st.tp));
      return list;
    };
    sc.ops = build(w);
    if (options.prefill) {
      sc.prefill_ops = build(pw);
      int64_t act = 0;
      for (const OpEntry& e : sc.prefill_ops) act = std::max(act, e.cost.activation_bytes);
      const int64_t sram = topo.spec_of(st.chips.front()).sram_bytes;
      const int64_t resident = st.weight_bytes + st.kv_bytes;
      out.prefill_peak_bytes = std::max(out.prefill_peak_bytes, resident + act);
      if (resident + act > sram) {
        const int64_t per_token = std::max<int64_t>(1, act / std::max<int64_t>(1, pw.context));
        throw Error(ErrorCode::kCannotFit,
                    "schedule: stage " + std::to_string(st.index) + " cannot prefill chunks of " +
                        std::to_string(pw.context) + " tokens: weights + KV cache " +
                        std::to_string(resident) + " B + prefill activations " +
                        std::to_string(act) + " B > SRAM " + std::to_string(sram) +
                        " B; a chunk of at most " +
                        std::to_string(std::max<int64_t>(0, (sram - resident) / per_token)) +
                        " tokens would fit (prefill_chunk)");
      }
      // Chunks before the last stop before the LM head: only the last one samples a token.
      sc.chunk_ops = sc.prefill_ops;
      if (st.has_head) {
        sc.chunk_ops.resize(sc.chunk_ops.size() - partition::HeadOps(spec, pw, st.tp).size());
      }
    }
    auto path_of = [&](const std::vector<OpEntry>& list) {
      int64_t path = 0;
      for (const OpEntry& e : list) {
        path += e.ns;
        if (st.tp > 1 && e.cost.allreduce_bytes > 0) {
          path += partition::AllReduceSteps(e.allreduce, st.tp) * overhead;
        }
        if (st.tp > 1 && e.cost.gather_bytes > 0) path += overhead;
      }
      return path;
    };
    const int64_t path = path_of(sc.ops);
    out.prefill_compute_path_ns +=
        chunks > 0 ? path_of(sc.prefill_ops) + (chunks - 1) * path_of(sc.chunk_ops) : 0;
    out.compute_path_ns += path;
    out.slowest_stage_compute_ns = std::max(out.slowest_stage_compute_ns, path);
    stages.push_back(std::move(sc));
  }

  // Sequences in flight: enough to fill the pipeline, as many as the KV cache allows.
  const int64_t plan_mb = std::max<int64_t>(1, plan.predicted.micro_batches_in_flight);
  int64_t sequences = options.sequences;
  if (sequences == 0) {
    int64_t pass = 0, slowest = 1;
    for (const partition::StagePlan& st : plan.stages) {
      pass += st.stage_ns + st.send_ns;
      slowest = std::max({slowest, st.stage_ns, st.send_ns});
    }
    sequences = std::max<int64_t>(1, (pass + slowest - 1) / slowest);
    for (const partition::StagePlan& st : plan.stages) {
      const int64_t kv_per_mb = st.kv_bytes / plan_mb;
      const int64_t room =
          topo.spec_of(st.chips.front()).sram_bytes - st.weight_bytes - st.activation_bytes;
      if (kv_per_mb > 0) sequences = std::min(sequences, std::max<int64_t>(1, room / kv_per_mb));
    }
  }
  out.sequences = sequences;
  out.prefill = options.prefill;
  out.prompt_len = options.prefill ? prompt_len : 0;
  out.prompt_bucket = bucket;
  out.prefill_chunks = chunks;
  out.prefill_chunk_tokens = options.prefill ? pw.context : 0;

  PassInputs in;
  in.topo = &topo;
  in.link_params = options.link_params;
  in.stages = &stages;
  in.overhead = overhead;
  in.act_bytes = w.tokens() * spec.hidden_size * DtypeBytes(w.dtype);
  in.prompt_act_bytes = pw.tokens() * spec.hidden_size * DtypeBytes(w.dtype);
  in.token_bytes = w.batch * 4;
  RouteCache routes(topo);
  const auto slots = static_cast<int32_t>(sequences);

  // The phases in run order, each compiled on its own (the decode phase is the same whether or
  // not a prompt precedes it).
  std::vector<std::pair<Phase, Pass>> compiled;
  if (chunks > 1) {
    compiled.push_back(CompilePhase(in, PhaseKind::kPrefillChunk, static_cast<int32_t>(-chunks),
                                    chunks - 1, slots, routes));
  }
  if (chunks > 0) {
    compiled.push_back(CompilePhase(in, PhaseKind::kPrefillLast, -1, 1, slots, routes));
  }
  compiled.push_back(CompilePhase(in, PhaseKind::kDecode, 0, options.tokens, slots, routes));

  // Chips: every chip with instructions in some phase.
  std::map<ChipId, std::pair<int, int>> stage_of;  // chip -> (stage, rank)
  for (const partition::StagePlan& st : plan.stages) {
    for (size_t r = 0; r < st.chips.size(); ++r) {
      stage_of[st.chips[r]] = {st.index, static_cast<int>(r)};
    }
  }
  std::map<ChipId, CompactChip> chips;
  for (size_t x = 0; x < compiled.size(); ++x) {
    for (auto& [c, body] : compiled[x].second.built.bodies) {
      CompactChip& cc = chips[c];
      cc.bodies.resize(compiled.size());
      cc.bodies[x] = std::move(body);
    }
  }
  for (auto& [c, cc] : chips) {
    cc.chip = c;
    auto it = stage_of.find(c);
    if (it != stage_of.end()) {
      const partition::StagePlan& st = plan.stages[static_cast<size_t>(it->second.first)];
      cc.stage = it->second.first;
      cc.rank = it->second.second;
      cc.resident_bytes = st.weight_bytes + st.activation_bytes + st.kv_bytes / plan_mb * sequences;
    }
    out.chips.push_back(std::move(cc));
  }

  // Place the phases, each as early as the validator's rules allow: on every compute unit and
  // link direction the previous phase's last copy ends before this phase's first starts, and
  // each slot's first instructions on a chip start after its last ones of the previous phase
  // there (the slot's previous pass). Other chips may still be in the previous phase.
  int64_t msg_base = 0;
  for (size_t x = 0; x < compiled.size(); ++x) {
    Phase& ph = compiled[x].first;
    ph.msg_base = msg_base;
    msg_base += ph.messages * ph.copies();
    if (x == 0) continue;
    const Phase& prev = compiled[x - 1].first;
    const int64_t prev_last = prev.start_ns + (prev.copies() - 1) * prev.slot_ns;
    int64_t start = prev.start_ns;
    for (const CompactChip& cc : out.chips) {
      const std::vector<Instruction>& a = cc.bodies[x - 1];
      const std::vector<Instruction>& b = cc.bodies[x];
      if (a.empty() || b.empty()) continue;
      // Resources (-1: the compute unit, else an outgoing link) and the chip's slot order.
      std::map<LinkId, int64_t> a_end, b_start;
      int64_t a_last = 0;
      for (const Instruction& i : a) {
        a_last = std::max(a_last, i.end_ns);
        if (i.kind == InstrKind::kRecv) continue;
        const LinkId r =
            i.kind == InstrKind::kCompute || i.kind == InstrKind::kReduce ? -1 : i.link;
        a_end[r] = std::max(a_end[r], i.end_ns);
      }
      for (const Instruction& i : b) {
        if (i.kind == InstrKind::kRecv) continue;
        const LinkId r =
            i.kind == InstrKind::kCompute || i.kind == InstrKind::kReduce ? -1 : i.link;
        auto [it, fresh] = b_start.try_emplace(r, i.start_ns);
        it->second = std::min(it->second, i.start_ns);
      }
      for (const auto& [r, end] : a_end) {
        auto it = b_start.find(r);
        if (it != b_start.end()) start = std::max(start, prev_last + end - it->second);
      }
      // Slot m: its last copy of the previous phase ends at prev_last - (slots - 1 - m) x
      // prev stride + a_last; its first here starts at start + m x stride + b.front().
      for (const int64_t m : {int64_t{0}, int64_t{ph.slots} - 1}) {
        start = std::max(start, prev_last - (ph.slots - 1 - m) * prev.slot_ns + a_last -
                                    b.front().start_ns - m * ph.slot_ns);
      }
    }
    ph.start_ns = start;
  }
  for (auto& [ph, pass] : compiled) out.phases.push_back(ph);

  const Phase& decode = out.phases.back();
  out.token_latency_ns = decode.token_latency_ns;
  out.cycle_ns = decode.pass_ns();
  out.period_ns = decode.slot_ns;
  if (options.prefill) {
    const Phase& last = out.phases[out.phases.size() - 2];
    out.time_to_first_token_ns = last.start_ns + last.token_latency_ns;
  }
  for (const CompactChip& cc : out.chips) {
    for (size_t x = 0; x < out.phases.size(); ++x) {
      const Phase& ph = out.phases[x];
      for (const Instruction& i : cc.bodies[x]) {
        out.makespan_ns =
            std::max(out.makespan_ns, ph.start_ns + i.end_ns + (ph.copies() - 1) * ph.slot_ns);
      }
    }
  }
  return out;
}

CompactSchedule CompileCompact(const partition::Plan& plan, const ScheduleOptions& options) {
  ScheduleOptions o = options;
  o.chip_params = plan.chip_params;
  o.link_params = plan.link_params;
  return CompileCompact(plan, plan.spec, partition::PlanTopology(plan), o);
}

}  // namespace lockstep::schedule
