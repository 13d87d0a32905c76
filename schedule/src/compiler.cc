// Compile(): list scheduling of every op, collective step and hop, first-fit on each resource.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "lockstep/common/error.h"
#include "lockstep/schedule/schedule.h"
#include "modulo.h"
#include "route.h"

namespace lockstep::schedule {

using partition::OpCost;
using partition::OpKind;

std::string_view InstrKindName(InstrKind kind) {
  switch (kind) {
    case InstrKind::kCompute:
      return "compute";
    case InstrKind::kReduce:
      return "reduce";
    case InstrKind::kSend:
      return "send";
    case InstrKind::kRecv:
      return "recv";
    case InstrKind::kForward:
      return "forward";
  }
  return "?";
}

std::string_view TagName(Tag tag) {
  switch (tag) {
    case Tag::kOp:
      return "op";
    case Tag::kReduceScatter:
      return "reduce_scatter";
    case Tag::kAllGather:
      return "all_gather";
    case Tag::kGather:
      return "gather";
    case Tag::kActivation:
      return "activation";
    case Tag::kToken:
      return "token";
    case Tag::kAllReduce:
      return "all_reduce";
  }
  return "?";
}

std::string DescribeStep(const Instruction& in) {
  std::string s = (in.token < -1  ? "prefill chunk " + std::to_string(in.token)
                   : in.token < 0 ? std::string("prefill")
                                  : "token " + std::to_string(in.token)) +
                  " sequence " + std::to_string(in.sequence) + " stage " + std::to_string(in.stage);
  if (in.layer >= 0) s += " layer " + std::to_string(in.layer);
  s += " ";
  s += in.tag == Tag::kOp ? partition::OpKindName(in.op) : TagName(in.tag);
  s += " ";
  s += InstrKindName(in.kind);
  return s;
}

size_t GlobalSchedule::instruction_count() const {
  size_t n = 0;
  for (const ChipProgram& p : programs) n += p.instructions.size();
  return n;
}

__extension__ using Int128 = __int128;

int64_t HopTimeNs(const topology::Link& link, int64_t bytes,
                  const partition::LinkCostParams& params) {
  const int64_t latency = params.hop_latency_ns >= 0 ? params.hop_latency_ns : link.latency_ns;
  if (bytes <= 0) return latency;
  // Effective rate in whole bytes/s, fixed once per link, so the time is exact integer math.
  const int64_t rate = std::max<int64_t>(
      1, std::llround(static_cast<double>(link.bandwidth_bytes_per_s) * params.link_efficiency));
  const Int128 num = static_cast<Int128>(bytes) * 1000000000 + rate - 1;
  return latency + static_cast<int64_t>(num / rate);
}

namespace {

// Busy intervals of one resource; Reserve() takes the earliest gap at or after `ready`.
class Timeline {
 public:
  int64_t Reserve(int64_t ready, int64_t duration) {
    int64_t t = ready;
    auto it = busy_.upper_bound(t);
    if (it != busy_.begin()) t = std::max(t, std::prev(it)->second);
    while (it != busy_.end() && it->first < t + duration) {
      t = std::max(t, it->second);
      ++it;
    }
    if (duration > 0) busy_.emplace(t, t + duration);
    return t;
  }

 private:
  std::map<int64_t, int64_t> busy_;  // start -> end, disjoint
};

struct OpEntry {
  OpCost cost;
  int64_t ns = 0;
  // The all-reduce after the op (allreduce_bytes > 0, tp > 1).
  partition::AllReduceAlgorithm allreduce = partition::AllReduceAlgorithm::kDirect;
};

using Deps = std::vector<int32_t>;

class Builder {
 public:
  Builder(const topology::Topology& topo, const partition::LinkCostParams& lp)
      : topo_(topo),
        lp_(lp),
        routes_(topo),
        programs_(static_cast<size_t>(topo.chip_count())),
        compute_(static_cast<size_t>(topo.chip_count())),
        links_(2 * static_cast<size_t>(topo.link_count())) {}

  // The step new instructions belong to.
  Instruction step;

  int64_t ReadyAt(ChipId chip, const Deps& deps) const {
    int64_t t = 0;
    for (int32_t d : deps) t = std::max(t, Program(chip)[static_cast<size_t>(d)].end_ns);
    return t;
  }

  int32_t Emit(ChipId chip, Instruction in) {
    std::vector<Instruction>& p = programs_[static_cast<size_t>(chip)];
    p.push_back(std::move(in));
    return static_cast<int32_t>(p.size() - 1);
  }

  int32_t Compute(ChipId chip, const Deps& deps, int64_t ns, InstrKind kind, Tag tag, OpKind op) {
    Instruction in = step;
    in.kind = kind;
    in.tag = tag;
    in.op = op;
    in.duration_ns = ns;
    in.start_ns = compute_[static_cast<size_t>(chip)].Reserve(ReadyAt(chip, deps), ns);
    in.end_ns = in.start_ns + ns;
    in.deps = deps;
    return Emit(chip, std::move(in));
  }

  // Moves `bytes` from `src` (ready after `deps`) to `dst` hop by hop; returns what an
  // instruction on `dst` must wait for.
  Deps Transfer(ChipId src, const Deps& deps, ChipId dst, int64_t bytes, Tag tag) {
    if (src == dst) return deps;
    const std::vector<RouteHop> hops = routes_.Route(src, dst);
    int64_t ready = ReadyAt(src, deps);
    int64_t in_msg = -1;
    LinkId in_link = -1;
    for (size_t h = 0; h < hops.size(); ++h) {
      const RouteHop& hop = hops[h];
      const topology::Link& link = topo_.link(hop.link);
      const int64_t ns = HopTimeNs(link, bytes, lp_);
      const size_t dir = 2 * static_cast<size_t>(hop.link) + (link.a.chip == hop.from ? 0 : 1);
      Instruction in = step;
      in.kind = h == 0 ? InstrKind::kSend : InstrKind::kForward;
      in.tag = tag;
      in.bytes = bytes;
      in.start_ns = links_[dir].Reserve(ready, ns);
      in.end_ns = in.start_ns + ns;
      in.link = hop.link;
      in.peer = hop.to;
      in.msg = next_msg_++;
      if (h == 0) {
        in.deps = deps;
      } else {
        in.in_link = in_link;
        in.in_peer = hops[h - 1].from;
        in.in_msg = in_msg;
      }
      ready = in.end_ns;
      in_msg = in.msg;
      in_link = hop.link;
      Emit(hop.from, std::move(in));
    }
    Instruction recv = step;
    recv.kind = InstrKind::kRecv;
    recv.tag = tag;
    recv.bytes = bytes;
    recv.start_ns = recv.end_ns = ready;
    recv.in_link = in_link;
    recv.in_peer = hops.back().from;
    recv.in_msg = in_msg;
    return {Emit(dst, std::move(recv))};
  }

  const std::vector<Instruction>& Program(ChipId chip) const {
    return programs_[static_cast<size_t>(chip)];
  }
  std::vector<std::vector<Instruction>>& programs() { return programs_; }

 private:
  const topology::Topology& topo_;
  partition::LinkCostParams lp_;
  RouteCache routes_;
  std::vector<std::vector<Instruction>> programs_;  // per chip, in compile order
  std::vector<Timeline> compute_;                   // per chip
  std::vector<Timeline> links_;                     // per link direction (2 x link + dir)
  int64_t next_msg_ = 0;
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

// One stage of one token of one sequence: its ops, collectives; returns each rank's data deps.
struct StageCode {
  const partition::StagePlan* plan = nullptr;
  std::vector<OpEntry> ops;          // every decode op of the stage on one chip, in order
  std::vector<OpEntry> prefill_ops;  // the same for the prompt's last chunk (when compiled)
  std::vector<OpEntry> chunk_ops;    // the other chunks: prefill_ops without the LM head
  bool direct = true;
};

void AllReduce(Builder& b, const StageCode& sc, std::vector<Deps>& data, int64_t bytes,
               partition::AllReduceAlgorithm algorithm, int64_t overhead) {
  const std::vector<ChipId>& chips = sc.plan->chips;
  const size_t g = chips.size();
  const int64_t chunk = (bytes + static_cast<int64_t>(g) - 1) / static_cast<int64_t>(g);
  // One step of a direct exchange: every rank sends `size` bytes to every peer over its own
  // link, then each reduces what it received.
  auto exchange = [&](Tag tag, int64_t size) {
    std::vector<Deps> in(g);
    for (size_t r = 0; r < g; ++r) {
      for (size_t k = 1; k < g; ++k) {
        const size_t j = (r + k) % g;
        const Deps d = b.Transfer(chips[r], data[r], chips[j], size, tag);
        in[j].insert(in[j].end(), d.begin(), d.end());
      }
    }
    for (size_t j = 0; j < g; ++j) {
      Deps deps = data[j];
      deps.insert(deps.end(), in[j].begin(), in[j].end());
      data[j] = {b.Compute(chips[j], deps, overhead, InstrKind::kReduce, tag, OpKind::kMlp)};
    }
  };
  if (algorithm == partition::AllReduceAlgorithm::kOneShot) {
    exchange(Tag::kAllReduce, bytes);
    return;
  }
  if (algorithm == partition::AllReduceAlgorithm::kDirect) {
    exchange(Tag::kReduceScatter, chunk);
    exchange(Tag::kAllGather, chunk);
    return;
  }
  for (size_t s = 0; s < 2 * (g - 1); ++s) {
    const Tag tag = s + 1 < g ? Tag::kReduceScatter : Tag::kAllGather;
    std::vector<Deps> in(g);
    for (size_t r = 0; r < g; ++r) {
      in[(r + 1) % g] = b.Transfer(chips[r], data[r], chips[(r + 1) % g], chunk, tag);
    }
    for (size_t r = 0; r < g; ++r) {
      Deps deps = data[r];
      deps.insert(deps.end(), in[r].begin(), in[r].end());
      data[r] = {b.Compute(chips[r], deps, overhead, InstrKind::kReduce, tag, OpKind::kMlp)};
    }
  }
}

// The modulo form's repeat interval: from the largest lower bound (the token's round trip, a
// sequence's span on any chip, any resource's busy time) upward by the largest collision
// until the period's reservations clear their shifted copies. Ends at the latest at the
// body's makespan, where no copy can overlap.
void ChooseRepeat(GlobalSchedule& out, int64_t iterations) {
  int64_t repeat = std::max<int64_t>(1, out.token_latency_ns);
  std::vector<std::vector<modulo::Interval>> resources;
  for (const ChipProgram& p : out.programs) {
    std::map<int32_t, std::pair<int64_t, int64_t>> span;  // sequence -> (first start, last end)
    std::vector<modulo::Interval> compute;
    int64_t busy = 0;
    for (size_t i = 0; i < p.instructions.size(); ++i) {
      const Instruction& in = p.instructions[i];
      auto [it, fresh] = span.try_emplace(in.sequence, in.start_ns, in.end_ns);
      it->second.first = std::min(it->second.first, in.start_ns);
      it->second.second = std::max(it->second.second, in.end_ns);
      if (in.kind == InstrKind::kCompute || in.kind == InstrKind::kReduce) {
        compute.push_back({in.start_ns, in.end_ns, static_cast<int32_t>(i)});
        busy += in.end_ns - in.start_ns;
      }
    }
    for (const auto& [seq, se] : span) repeat = std::max(repeat, se.second - se.first);
    repeat = std::max(repeat, busy);
    resources.push_back(std::move(compute));
  }
  for (const LinkTable& t : out.links) {
    std::vector<modulo::Interval> r;
    int64_t busy = 0;
    for (const Reservation& x : t.reservations) {
      r.push_back({x.start_ns, x.end_ns, 0});
      busy += x.end_ns - x.start_ns;
    }
    repeat = std::max(repeat, busy);
    resources.push_back(std::move(r));
  }
  while (repeat < out.makespan_ns) {
    int64_t worst = 0;
    for (const auto& r : resources)
      worst = std::max(worst, modulo::LargestOverlap(r, repeat).amount);
    if (worst == 0) break;
    repeat = std::min(out.makespan_ns, repeat + worst);
  }
  out.iterations = iterations;
  out.tokens = iterations;
  out.repeat_ns = repeat;
  out.cycle_ns = repeat;
  out.period_ns = repeat / std::max<int64_t>(1, out.sequences);
  int64_t msgs = 0;
  for (const ChipProgram& p : out.programs) {
    for (const Instruction& in : p.instructions) msgs = std::max({msgs, in.msg + 1, in.in_msg + 1});
  }
  out.msg_stride = msgs;
  out.makespan_ns += (iterations - 1) * repeat;
}

}  // namespace

GlobalSchedule Compile(const partition::Plan& plan, const partition::ModelSpec& spec,
                       const topology::Topology& topo, const ScheduleOptions& options) {
  if (options.tokens < 1) throw InvalidInput("schedule: tokens must be >= 1");
  if (options.prompt_len < 0) throw InvalidInput("schedule: prompt_len must be >= 0");
  if (options.sequences < 0) throw InvalidInput("schedule: sequences must be >= 0");
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
  if (options.modulo && options.prefill) {
    throw InvalidInput("schedule: the modulo form is decode only (compile prefill explicitly)");
  }
  const int64_t body_tokens = options.modulo ? 1 : options.tokens;
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

  GlobalSchedule out;
  out.model = plan.model;
  out.topology = topo.name();
  out.tokens = options.tokens;
  out.batch = w.batch;
  out.stages = static_cast<int>(plan.stages.size());

  std::vector<StageCode> stages;
  for (const partition::StagePlan& st : plan.stages) {
    StageCode sc;
    sc.plan = &st;
    sc.direct = FullyConnected(topo, st.chips);
    auto build = [&](const partition::Workload& wl) {
      std::vector<OpEntry> list;
      auto add = [&](const std::vector<OpCost>& ops) {
        const topology::ChipSpec& chip_spec = topo.spec_of(st.chips.front());
        for (const OpCost& op : ops) {
          const partition::AllReduceAlgorithm allreduce = partition::ChooseAllReduce(
              op.allreduce_bytes, st.tp, sc.direct, partition::OneShotAllowed(spec, st.tp, op.kind),
              chip_spec.link_bandwidth_bytes_per_s, chip_spec.link_latency_ns, options.link_params);
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

  Builder b(topo, options.link_params);
  const int64_t act_bytes = w.tokens() * spec.hidden_size * DtypeBytes(w.dtype);
  const int64_t prompt_act_bytes = pw.tokens() * spec.hidden_size * DtypeBytes(w.dtype);
  out.prefill = options.prefill;
  out.prompt_len = options.prefill ? prompt_len : 0;
  out.prompt_bucket = bucket;
  out.prefill_chunks = chunks;
  out.prefill_chunk_tokens = options.prefill ? pw.context : 0;
  const int64_t token_bytes = w.batch * 4;
  // next[m][r]: what rank r of stage 0 waits for before sequence m's next token.
  std::vector<std::vector<Deps>> next(static_cast<size_t>(sequences),
                                      std::vector<Deps>(plan.stages.front().chips.size()));
  std::vector<int64_t> arrival0;  // sequence 0: when each token is back at stage 0
  // Prefill chunks of sequence m: where each stage's ranks finished the previous chunk.
  std::vector<std::vector<std::vector<Deps>>> chunk_done(
      static_cast<size_t>(sequences), std::vector<std::vector<Deps>>(stages.size()));
  for (int64_t t = -chunks; t < body_tokens; ++t) {
    const bool inner_chunk = t < -1;  // a prefill chunk before the last
    for (int64_t m = 0; m < sequences; ++m) {
      b.step.token = static_cast<int32_t>(t);
      b.step.sequence = static_cast<int32_t>(m);
      std::vector<Deps> data = next[static_cast<size_t>(m)];
      for (size_t s = 0; s < stages.size(); ++s) {
        const StageCode& sc = stages[s];
        const std::vector<ChipId>& chips = sc.plan->chips;
        b.step.stage = static_cast<int32_t>(s);
        if (t < 0 && t > -chunks) {
          // The previous chunk has left this stage (its KV cache is written).
          std::vector<Deps>& done = chunk_done[static_cast<size_t>(m)][s];
          for (size_t r = 0; r < chips.size(); ++r) {
            data[r].insert(data[r].end(), done[r].begin(), done[r].end());
          }
        }
        size_t active = chips.size();
        for (const OpEntry& e : t < 0 ? (inner_chunk ? sc.chunk_ops : sc.prefill_ops) : sc.ops) {
          b.step.layer = static_cast<int32_t>(e.cost.layer);
          for (size_t r = 0; r < active; ++r) {
            data[r] = {
                b.Compute(chips[r], data[r], e.ns, InstrKind::kCompute, Tag::kOp, e.cost.kind)};
          }
          if (chips.size() > 1 && e.cost.allreduce_bytes > 0 && active == chips.size()) {
            AllReduce(b, sc, data, e.cost.allreduce_bytes, e.allreduce, overhead);
          }
          if (chips.size() > 1 && e.cost.gather_bytes > 0) {
            Deps deps = data[0];
            for (size_t r = 1; r < chips.size(); ++r) {
              const Deps d =
                  b.Transfer(chips[r], data[r], chips[0], e.cost.gather_bytes, Tag::kGather);
              deps.insert(deps.end(), d.begin(), d.end());
            }
            data[0] = {
                b.Compute(chips[0], deps, overhead, InstrKind::kReduce, Tag::kGather, e.cost.kind)};
            active = 1;
          }
        }
        b.step.layer = -1;
        const bool last = s + 1 == stages.size();
        if (t < 0) chunk_done[static_cast<size_t>(m)][s] = data;
        if (inner_chunk && last) {
          // No token yet: the next chunk starts at stage 0 when stage 0 is done with this one.
          data = chunk_done[static_cast<size_t>(m)][0];
          break;
        }
        const std::vector<ChipId>& to = last ? stages[0].plan->chips : stages[s + 1].plan->chips;
        std::vector<Deps> moved(to.size());
        for (size_t r = 0; r < to.size(); ++r) {
          const size_t from = last ? 0 : r % active;
          moved[r] = b.Transfer(chips[from], data[from], to[r],
                                last ? token_bytes : (t < 0 ? prompt_act_bytes : act_bytes),
                                last ? Tag::kToken : Tag::kActivation);
        }
        data = std::move(moved);
      }
      if (inner_chunk) {
        next[static_cast<size_t>(m)] = std::move(data);
        continue;
      }
      if (m == 0) {
        int64_t back = 0;
        for (size_t r = 0; r < data.size(); ++r) {
          back = std::max(back, b.ReadyAt(plan.stages[0].chips[r], data[r]));
        }
        arrival0.push_back(back);
      }
      next[static_cast<size_t>(m)] = std::move(data);
    }
  }
  if (options.prefill) {
    out.time_to_first_token_ns = arrival0.front();
    out.token_latency_ns = arrival0[1] - arrival0[0];
  } else {
    out.token_latency_ns = arrival0.front();
  }
  out.cycle_ns =
      arrival0.size() >= 2 ? arrival0.back() - arrival0[arrival0.size() - 2] : arrival0.front();
  out.period_ns = out.cycle_ns / sequences;

  // Programs in planned start order (ties keep compile order, so deps stay earlier).
  std::map<ChipId, std::pair<int, int>> stage_of;  // chip -> (stage, rank)
  for (const partition::StagePlan& st : plan.stages) {
    for (size_t r = 0; r < st.chips.size(); ++r)
      stage_of[st.chips[r]] = {st.index, static_cast<int>(r)};
  }
  std::map<std::pair<LinkId, ChipId>, LinkTable> tables;
  for (ChipId c = 0; c < topo.chip_count(); ++c) {
    std::vector<Instruction>& prog = b.programs()[static_cast<size_t>(c)];
    if (prog.empty()) continue;
    std::vector<int32_t> order(prog.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
      return prog[static_cast<size_t>(x)].start_ns < prog[static_cast<size_t>(y)].start_ns;
    });
    std::vector<int32_t> where(prog.size());
    for (size_t i = 0; i < order.size(); ++i)
      where[static_cast<size_t>(order[i])] = static_cast<int32_t>(i);
    ChipProgram cp_out;
    cp_out.chip = c;
    auto it = stage_of.find(c);
    if (it != stage_of.end()) {
      const partition::StagePlan& st = plan.stages[static_cast<size_t>(it->second.first)];
      cp_out.stage = it->second.first;
      cp_out.rank = it->second.second;
      cp_out.resident_bytes =
          st.weight_bytes + st.activation_bytes + st.kv_bytes / plan_mb * sequences;
    }
    cp_out.instructions.reserve(prog.size());
    for (int32_t i : order) {
      Instruction in = std::move(prog[static_cast<size_t>(i)]);
      for (int32_t& d : in.deps) d = where[static_cast<size_t>(d)];
      std::sort(in.deps.begin(), in.deps.end());
      in.deps.erase(std::unique(in.deps.begin(), in.deps.end()), in.deps.end());
      out.makespan_ns = std::max(out.makespan_ns, in.end_ns);
      if (in.kind == InstrKind::kSend || in.kind == InstrKind::kForward) {
        LinkTable& lt = tables[{in.link, c}];
        lt.link = in.link;
        lt.from = c;
        lt.to = in.peer;
        lt.reservations.push_back({in.start_ns, in.end_ns, in.msg});
      }
      cp_out.instructions.push_back(std::move(in));
    }
    prog.clear();
    prog.shrink_to_fit();
    out.programs.push_back(std::move(cp_out));
  }
  for (auto& [key, lt] : tables) out.links.push_back(std::move(lt));
  if (options.modulo) ChooseRepeat(out, options.tokens);
  return out;
}

GlobalSchedule Unroll(const GlobalSchedule& s, int64_t iterations) {
  if (s.iterations == 0) return s;
  if (iterations < 1) throw InvalidInput("schedule: unroll needs iterations >= 1");
  GlobalSchedule out = s;
  out.iterations = 0;
  out.repeat_ns = 0;
  out.msg_stride = 0;
  out.tokens = iterations;
  out.makespan_ns = s.makespan_ns - (s.iterations - iterations) * s.repeat_ns;
  for (ChipProgram& p : out.programs) {
    const std::vector<Instruction>& body =
        s.programs[static_cast<size_t>(&p - out.programs.data())].instructions;
    const size_t n = body.size();
    // Merge the copies in planned start order (ties: earlier iteration, then body order).
    std::vector<std::pair<int64_t, int64_t>> order;  // (start, k * n + i)
    order.reserve(n * static_cast<size_t>(iterations));
    for (int64_t k = 0; k < iterations; ++k) {
      for (size_t i = 0; i < n; ++i) {
        order.push_back({body[i].start_ns + k * s.repeat_ns,
                         k * static_cast<int64_t>(n) + static_cast<int64_t>(i)});
      }
    }
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<int32_t> where(order.size());
    for (size_t g = 0; g < order.size(); ++g) {
      where[static_cast<size_t>(order[g].second)] = static_cast<int32_t>(g);
    }
    // Each sequence's last-ending instruction in the body: the next iteration waits for it.
    std::map<int32_t, size_t> last_of;
    for (size_t i = 0; i < n; ++i) {
      auto [it, fresh] = last_of.try_emplace(body[i].sequence, i);
      if (body[i].end_ns >= body[it->second].end_ns) it->second = i;
    }
    p.instructions.clear();
    p.instructions.reserve(order.size());
    for (const auto& [start, key] : order) {
      const int64_t k = key / static_cast<int64_t>(n);
      Instruction in = body[static_cast<size_t>(key % static_cast<int64_t>(n))];
      const int64_t shift = k * s.repeat_ns;
      in.start_ns += shift;
      in.end_ns += shift;
      in.token = static_cast<int32_t>(k);
      if (in.msg >= 0) in.msg += k * s.msg_stride;
      if (in.in_msg >= 0) in.in_msg += k * s.msg_stride;
      const bool first = in.deps.empty();
      for (int32_t& d : in.deps) d = where[static_cast<size_t>(k * static_cast<int64_t>(n) + d)];
      if (first && k > 0) {
        in.deps.push_back(where[static_cast<size_t>((k - 1) * static_cast<int64_t>(n)) +
                                last_of.at(in.sequence)]);
      }
      p.instructions.push_back(std::move(in));
    }
  }
  for (LinkTable& t : out.links) {
    const std::vector<Reservation> body = t.reservations;
    t.reservations.clear();
    for (int64_t k = 0; k < iterations; ++k) {
      for (const Reservation& x : body) {
        t.reservations.push_back(
            {x.start_ns + k * s.repeat_ns, x.end_ns + k * s.repeat_ns, x.msg + k * s.msg_stride});
      }
    }
    std::stable_sort(
        t.reservations.begin(), t.reservations.end(),
        [](const Reservation& a, const Reservation& b) { return a.start_ns < b.start_ns; });
  }
  return out;
}

int64_t PromptBucket(int64_t prompt_len, const std::vector<int64_t>& buckets) {
  if (prompt_len < 1) throw InvalidInput("schedule: prompt length must be >= 1");
  if (buckets.empty()) {
    int64_t b = 16;
    while (b < prompt_len) b *= 2;
    return b;
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (buckets[i] < 1 || (i > 0 && buckets[i] <= buckets[i - 1])) {
      throw InvalidInput("schedule: prompt buckets must be ascending and >= 1 (bucket " +
                         std::to_string(i) + " is " + std::to_string(buckets[i]) + ")");
    }
  }
  for (int64_t b : buckets) {
    if (b >= prompt_len) return b;
  }
  const int64_t top = buckets.back();
  return (prompt_len + top - 1) / top * top;
}

GlobalSchedule Compile(const partition::Plan& plan, const ScheduleOptions& options) {
  ScheduleOptions o = options;
  o.chip_params = plan.chip_params;
  o.link_params = plan.link_params;
  return Compile(plan, plan.spec, partition::PlanTopology(plan), o);
}

}  // namespace lockstep::schedule
