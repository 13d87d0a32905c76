#include "lockstep/schedule/simulate.h"

#include <algorithm>
#include <map>
#include <queue>
#include <tuple>

namespace lockstep::schedule {
namespace {

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

Measured Pair(double value, double bound) { return {value, bound, bound != 0 ? value / bound : 0}; }

}  // namespace

SimResult Simulate(const GlobalSchedule& schedule, const topology::Topology& topo,
                   const SimulateOptions& o) {
  // A modulo schedule runs as its explicit form: every iteration's instructions are events.
  GlobalSchedule unrolled;
  if (schedule.iterations > 0) {
    unrolled = Unroll(schedule, o.iterations > 0 ? o.iterations : schedule.iterations);
  }
  const GlobalSchedule& s = schedule.iterations > 0 ? unrolled : schedule;
  SimResult result;
  // Flatten: global index = offset[p] + i.
  std::vector<size_t> offset(s.programs.size() + 1, 0);
  for (size_t p = 0; p < s.programs.size(); ++p) {
    offset[p + 1] = offset[p] + s.programs[p].instructions.size();
  }
  const size_t n = offset.back();
  std::vector<uint32_t> prog_of(n);
  for (size_t p = 0; p < s.programs.size(); ++p) {
    std::fill(prog_of.begin() + static_cast<std::ptrdiff_t>(offset[p]),
              prog_of.begin() + static_cast<std::ptrdiff_t>(offset[p + 1]),
              static_cast<uint32_t>(p));
  }
  auto instr = [&](size_t g) -> const Instruction& {
    return s.programs[prog_of[g]].instructions[g - offset[prog_of[g]]];
  };
  // Who sends each message (by id, not by time).
  std::vector<std::pair<int64_t, size_t>> senders;
  for (size_t g = 0; g < n; ++g) {
    const Instruction& in = instr(g);
    if (in.kind == InstrKind::kSend || in.kind == InstrKind::kForward)
      senders.emplace_back(in.msg, g);
  }
  std::sort(senders.begin(), senders.end());
  // Predecessor edges: deps, the previous user of the same resource, the message's sender.
  std::vector<std::pair<size_t, size_t>> edges;  // (pred, succ)
  std::vector<size_t> unsent;
  edges.reserve(2 * n);
  for (size_t p = 0; p < s.programs.size(); ++p) {
    const std::vector<Instruction>& prog = s.programs[p].instructions;
    int64_t last_compute = -1;
    std::map<LinkId, size_t> last_on_link;
    for (size_t i = 0; i < prog.size(); ++i) {
      const size_t g = offset[p] + i;
      const Instruction& in = prog[i];
      for (int32_t d : in.deps) edges.emplace_back(offset[p] + static_cast<size_t>(d), g);
      if (in.kind == InstrKind::kCompute || in.kind == InstrKind::kReduce) {
        if (last_compute >= 0) edges.emplace_back(static_cast<size_t>(last_compute), g);
        last_compute = static_cast<int64_t>(g);
      }
      if (in.kind == InstrKind::kSend || in.kind == InstrKind::kForward) {
        auto it = last_on_link.find(in.link);
        if (it != last_on_link.end()) edges.emplace_back(it->second, g);
        last_on_link[in.link] = g;
      }
      if (in.kind == InstrKind::kRecv || in.kind == InstrKind::kForward) {
        auto it =
            std::lower_bound(senders.begin(), senders.end(), std::make_pair(in.in_msg, size_t{0}));
        if (it != senders.end() && it->first == in.in_msg) {
          edges.emplace_back(it->second, g);
        } else {
          unsent.push_back(g);  // waits for a message nobody sends: never runs
        }
      }
    }
  }
  std::vector<uint32_t> succ_begin(n + 1, 0), succ(edges.size());
  std::vector<int32_t> waiting(n, 0);
  for (const auto& [a, b] : edges) {
    ++succ_begin[a + 1];
    ++waiting[b];
  }
  for (size_t g : unsent) ++waiting[g];
  for (size_t g = 0; g < n; ++g) succ_begin[g + 1] += succ_begin[g];
  {
    std::vector<uint32_t> fill(succ_begin.begin(), succ_begin.end() - 1);
    for (const auto& [a, b] : edges) succ[fill[a]++] = static_cast<uint32_t>(b);
  }
  edges.clear();
  edges.shrink_to_fit();

  std::vector<bool> failed(static_cast<size_t>(topo.link_count()), false);
  for (LinkId l : o.failed_links) {
    if (l >= 0 && l < topo.link_count()) failed[static_cast<size_t>(l)] = true;
  }
  std::vector<int64_t> start(n, -1), end(n, -1), ready(n, 0);
  uint64_t rng = o.seed;
  // Min-heap of (time, phase: 0 = end before 1 = start, chip, index).
  using Event = std::tuple<int64_t, int, ChipId, uint32_t>;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue;
  auto chip_of = [&](size_t g) { return s.programs[prog_of[g]].chip; };
  for (size_t g = 0; g < n; ++g) {
    if (waiting[g] == 0) queue.emplace(0, 1, chip_of(g), static_cast<uint32_t>(g));
  }
  int64_t events = 0;
  while (!queue.empty()) {
    const auto [t, phase, chip, gi] = queue.top();
    queue.pop();
    ++events;
    const size_t g = gi;
    const Instruction& in = instr(g);
    if (phase == 1) {
      start[g] = t;
      int64_t d = 0;
      switch (in.kind) {
        case InstrKind::kCompute:
        case InstrKind::kReduce:
          d = in.duration_ns;
          if (o.jitter > 0 && d > 0) {
            const double u = static_cast<double>(SplitMix(rng) >> 11) * 0x1.0p-53;
            d += static_cast<int64_t>(static_cast<double>(d) * o.jitter * u);
          }
          break;
        case InstrKind::kSend:
        case InstrKind::kForward:
          if (in.link < 0 || in.link >= topo.link_count() || failed[static_cast<size_t>(in.link)]) {
            result.ok = false;
            result.failure_ns = t;
            result.failure = "chip " + std::to_string(chip) + " link " + std::to_string(in.link) +
                             " (to chip " + std::to_string(in.peer) + ") failed at " +
                             std::to_string(t) + " ns during " + DescribeStep(in);
            queue = {};
            continue;
          }
          d = HopTimeNs(topo.link(in.link), in.bytes, o.link_params);
          break;
        case InstrKind::kRecv:
          break;
      }
      queue.emplace(t + d, 0, chip, gi);
      continue;
    }
    end[g] = t;
    for (uint32_t k = succ_begin[g]; k < succ_begin[g + 1]; ++k) {
      const uint32_t nx = succ[k];
      ready[nx] = std::max(ready[nx], t);
      if (--waiting[nx] == 0) queue.emplace(ready[nx], 1, chip_of(nx), nx);
    }
  }
  if (result.ok) {
    for (size_t g = 0; g < n; ++g) {
      if (end[g] < 0) {
        result.ok = false;
        result.failure = "chip " + std::to_string(chip_of(g)) + " never ran " +
                         DescribeStep(instr(g)) + " #" + std::to_string(g - offset[prog_of[g]]) +
                         ": its inputs never arrived (deadlock or a message never sent)";
        break;
      }
    }
  }

  // Metrics.
  SimMetrics& m = result.metrics;
  m.events = events;
  m.predicted_token_latency_ns = s.token_latency_ns;
  std::map<std::pair<int32_t, int32_t>, std::pair<int64_t, int64_t>> span;  // (seq, token)
  int64_t first = INT64_MAX, last = 0, decode_first = INT64_MAX, decode_last = 0;
  for (size_t g = 0; g < n; ++g) {
    if (end[g] < 0) continue;
    const Instruction& in = instr(g);
    auto [it, fresh] = span.try_emplace({in.sequence, in.token}, start[g], end[g]);
    if (!fresh) {
      it->second.first = std::min(it->second.first, start[g]);
      it->second.second = std::max(it->second.second, end[g]);
    }
    first = std::min(first, start[g]);
    last = std::max(last, end[g]);
    if (in.token >= 0) {
      decode_first = std::min(decode_first, start[g]);
      decode_last = std::max(decode_last, end[g]);
    }
  }
  if (span.empty()) first = 0;
  if (decode_first == INT64_MAX) decode_first = 0;
  m.makespan_ns = last - first;
  // Throughput and utilization are measured over the decode steps (prefill excluded).
  const int64_t window = decode_last - decode_first;
  double latency_sum = 0;  // decode steps only
  int64_t count = 0;
  int64_t prompt_start = INT64_MAX;  // sequence 0's first prefill chunk
  for (auto it = span.begin(); it != span.end(); ++it) {
    if (it->first.second < 0) {  // the prompt: time to first token, not a decode step
      if (it->first.first == 0) {
        prompt_start = std::min(prompt_start, it->second.first);
        if (it->first.second == -1) {  // the last chunk, which brings the first token back
          m.time_to_first_token_ns = Pair(static_cast<double>(it->second.second - prompt_start),
                                          static_cast<double>(s.prefill_compute_path_ns));
        }
      }
      continue;
    }
    auto prev = it == span.begin() ? span.end() : std::prev(it);
    const bool has_prev = prev != span.end() && prev->first.first == it->first.first;
    latency_sum += static_cast<double>(it->second.second -
                                       (has_prev ? prev->second.second : it->second.first));
    ++count;
  }
  const double latency = count > 0 ? latency_sum / static_cast<double>(count) : 0;
  const double path = static_cast<double>(s.compute_path_ns);
  m.token_latency_ns = Pair(latency, path);
  m.tokens_per_s_per_user = Pair(latency > 0 ? 1e9 / latency : 0, path > 0 ? 1e9 / path : 0);
  const double tokens = static_cast<double>(count) * static_cast<double>(s.batch);
  const double mk = static_cast<double>(window);
  const double seqs = static_cast<double>(s.sequences);
  const double ideal_cycle = std::max(path, seqs * static_cast<double>(s.slowest_stage_compute_ns));
  const double tps_bound =
      ideal_cycle > 0 ? seqs * static_cast<double>(s.batch) * 1e9 / ideal_cycle : 0;
  m.tokens_per_s = Pair(mk > 0 ? tokens * 1e9 / mk : 0, tps_bound);
  const double ideal_makespan = tps_bound > 0 ? tokens * 1e9 / tps_bound : 0;
  double busy_sum = 0, chips = 0;
  std::map<std::pair<LinkId, ChipId>, int64_t> link_busy;
  for (size_t p = 0; p < s.programs.size(); ++p) {
    int64_t busy = 0;
    for (size_t i = 0; i < s.programs[p].instructions.size(); ++i) {
      const size_t g = offset[p] + i;
      const Instruction& in = s.programs[p].instructions[i];
      if (end[g] < 0 || in.token < 0) continue;
      if (in.kind == InstrKind::kCompute || in.kind == InstrKind::kReduce)
        busy += end[g] - start[g];
      if (in.kind == InstrKind::kSend || in.kind == InstrKind::kForward) {
        link_busy[{in.link, s.programs[p].chip}] += end[g] - start[g];
      }
    }
    if (s.programs[p].stage < 0) continue;
    busy_sum += static_cast<double>(busy);
    chips += 1;
    if (mk > 0) {
      m.compute_utilization_max =
          std::max(m.compute_utilization_max, static_cast<double>(busy) / mk);
    }
  }
  const double mean_busy = chips > 0 ? busy_sum / chips : 0;
  m.compute_utilization = Pair(mk > 0 ? mean_busy / mk : 0,
                               ideal_makespan > 0 ? std::min(1.0, mean_busy / ideal_makespan) : 0);
  double link_sum = 0;
  for (const auto& [key, busy] : link_busy) {
    link_sum += static_cast<double>(busy);
    if (mk > 0)
      m.link_utilization_max = std::max(m.link_utilization_max, static_cast<double>(busy) / mk);
  }
  const double mean_link = link_busy.empty() ? 0 : link_sum / static_cast<double>(link_busy.size());
  m.link_utilization = Pair(mk > 0 ? mean_link / mk : 0,
                            ideal_makespan > 0 ? std::min(1.0, mean_link / ideal_makespan) : 0);
  m.bubble_fraction = Pair(1.0 - m.compute_utilization.value, 1.0 - m.compute_utilization.bound);
  if (o.keep_times) {
    result.start_ns.resize(s.programs.size());
    result.end_ns.resize(s.programs.size());
    for (size_t p = 0; p < s.programs.size(); ++p) {
      result.start_ns[p].assign(start.begin() + static_cast<std::ptrdiff_t>(offset[p]),
                                start.begin() + static_cast<std::ptrdiff_t>(offset[p + 1]));
      result.end_ns[p].assign(end.begin() + static_cast<std::ptrdiff_t>(offset[p]),
                              end.begin() + static_cast<std::ptrdiff_t>(offset[p + 1]));
    }
  }
  return result;
}

}  // namespace lockstep::schedule
