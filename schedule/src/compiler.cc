// The explicit schedule (Compile: the compact form written out), Unroll, and the small shared
// definitions of schedule.h.
#include <algorithm>
#include <cmath>
#include <map>

#include "lockstep/common/error.h"
#include "lockstep/schedule/compact.h"
#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule {

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

GlobalSchedule Compile(const partition::Plan& plan, const partition::ModelSpec& spec,
                       const topology::Topology& topo, const ScheduleOptions& options) {
  if (options.modulo && options.prefill) {
    throw InvalidInput("schedule: the modulo form is decode only (compile prefill explicitly)");
  }
  const CompactSchedule compact = CompileCompact(plan, spec, topo, options);
  return options.modulo ? DecodePeriod(compact, options.tokens) : Expand(compact, options.tokens);
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
