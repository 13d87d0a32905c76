#include "lockstep/schedule/simulate.h"

#include <algorithm>
#include <map>
#include <queue>
#include <tuple>

#include "link_model.h"
#include "lockstep/common/error.h"

namespace lockstep::schedule {
namespace {

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

Measured Pair(double value, double bound) { return {value, bound, bound != 0 ? value / bound : 0}; }

bool Transmits(const Instruction& in) {
  return in.kind == InstrKind::kSend || in.kind == InstrKind::kForward;
}
bool Receives(const Instruction& in) {
  return in.kind == InstrKind::kRecv || in.kind == InstrKind::kForward;
}
bool Computes(const Instruction& in) {
  return in.kind == InstrKind::kCompute || in.kind == InstrKind::kReduce;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

constexpr uint32_t kNone = UINT32_MAX;

// Why an instance started when it did: the predecessor that was ready last.
enum class Why : uint8_t { kUnset, kDep, kMessage, kResource, kPass };

// Per phase, per chip body: what the event loop needs besides the instructions.
struct Body {
  std::vector<uint32_t> rdep_begin;  // reverse deps (CSR): who waits for instruction i
  std::vector<int32_t> rdep;
  std::vector<int32_t> resource;                   // global resource id, -1 for a Recv
  std::vector<int32_t> peer_chip, peer_index;      // Send/Forward: the receiver in the same copy
  std::vector<uint8_t> last;                       // the last-ending of its sequence
  std::map<int32_t, std::vector<int32_t>> firsts;  // sequence -> instructions without deps
  std::map<int32_t, int32_t> last_of;              // sequence -> its last-ending instruction
  std::vector<int32_t> pair;                       // index of (sequence, token) in the phase
};

}  // namespace

InstanceIndex::InstanceIndex(const CompactSchedule& s, int64_t passes) {
  base_.push_back(0);
  for (size_t x = 0; x < s.phases.size(); ++x) {
    const Phase& ph = s.phases[x];
    const int64_t copies =
        (ph.kind == PhaseKind::kDecode && passes > 0 ? passes : ph.passes) * ph.slots;
    std::vector<size_t> offset;
    size_t n = 0;
    for (const CompactChip& c : s.chips) {
      offset.push_back(n);
      n += x < c.bodies.size() ? c.bodies[x].size() : 0;
    }
    offset.push_back(n);
    offset_.push_back(std::move(offset));
    per_copy_.push_back(n);
    copies_.push_back(copies);
    base_.push_back(base_.back() + n * static_cast<size_t>(copies));
  }
  total_ = base_.back();
}

InstanceIndex::Where InstanceIndex::At(size_t id) const {
  Where w;
  w.phase =
      static_cast<size_t>(std::upper_bound(base_.begin(), base_.end(), id) - base_.begin()) - 1;
  const size_t rem = id - base_[w.phase];
  w.copy = static_cast<int64_t>(rem / per_copy_[w.phase]);
  const size_t in_copy = rem % per_copy_[w.phase];
  const std::vector<size_t>& off = offset_[w.phase];
  w.chip = static_cast<size_t>(std::upper_bound(off.begin(), off.end(), in_copy) - off.begin()) - 1;
  w.index = in_copy - off[w.chip];
  return w;
}

SimResult Simulate(const CompactSchedule& s, const topology::Topology& topo,
                   const SimulateOptions& o) {
  SimResult result;
  const InstanceIndex index(s, o.iterations);
  if (index.size() >= kNone) {
    throw InvalidInput("simulate: " + std::to_string(index.size()) +
                       " instructions to run are too many; simulate fewer tokens");
  }
  const size_t phases = s.phases.size();
  const size_t chips = s.chips.size();
  auto body_of = [&](size_t x, size_t c) -> const std::vector<Instruction>& {
    return s.chips[c].bodies[x];
  };

  // Resources: each chip's compute unit (id = chip index), then each (chip, outgoing link).
  std::map<std::pair<size_t, LinkId>, int32_t> link_resource;
  std::vector<std::pair<size_t, LinkId>> resources;  // for link resources: (chip, link)
  for (size_t c = 0; c < chips; ++c) resources.push_back({c, -1});
  // Per phase: (sequence, token) pairs of the bodies, the message table.
  std::vector<std::vector<std::pair<int32_t, int32_t>>> pairs(phases);
  std::vector<std::vector<Body>> bodies(phases, std::vector<Body>(chips));
  for (size_t x = 0; x < phases; ++x) {
    const Phase& ph = s.phases[x];
    std::map<std::pair<int32_t, int32_t>, int32_t> pair_id;
    std::vector<std::pair<int32_t, int32_t>> receiver(static_cast<size_t>(ph.messages), {-1, -1});
    for (size_t c = 0; c < chips; ++c) {
      const std::vector<Instruction>& body = body_of(x, c);
      for (size_t i = 0; i < body.size(); ++i) {
        const Instruction& in = body[i];
        if (Receives(in) && in.in_msg >= 0 && in.in_msg < ph.messages &&
            receiver[static_cast<size_t>(in.in_msg)].first < 0) {
          receiver[static_cast<size_t>(in.in_msg)] = {static_cast<int32_t>(c),
                                                      static_cast<int32_t>(i)};
        }
      }
    }
    for (size_t c = 0; c < chips; ++c) {
      const std::vector<Instruction>& body = body_of(x, c);
      Body& b = bodies[x][c];
      const size_t n = body.size();
      b.rdep_begin.assign(n + 1, 0);
      for (const Instruction& in : body) {
        for (int32_t d : in.deps) ++b.rdep_begin[static_cast<size_t>(d) + 1];
      }
      for (size_t i = 0; i < n; ++i) b.rdep_begin[i + 1] += b.rdep_begin[i];
      b.rdep.resize(b.rdep_begin[n]);
      std::vector<uint32_t> fill(b.rdep_begin.begin(), b.rdep_begin.end() - 1);
      b.resource.assign(n, -1);
      b.peer_chip.assign(n, -1);
      b.peer_index.assign(n, -1);
      b.last.assign(n, 0);
      b.pair.assign(n, 0);
      for (size_t i = 0; i < n; ++i) {
        const Instruction& in = body[i];
        for (int32_t d : in.deps) b.rdep[fill[static_cast<size_t>(d)]++] = static_cast<int32_t>(i);
        if (Computes(in)) b.resource[i] = static_cast<int32_t>(c);
        if (Transmits(in)) {
          auto [it, fresh] =
              link_resource.try_emplace({c, in.link}, static_cast<int32_t>(resources.size()));
          if (fresh) resources.push_back({c, in.link});
          b.resource[i] = it->second;
          if (in.msg >= 0 && in.msg < ph.messages) {
            std::tie(b.peer_chip[i], b.peer_index[i]) = receiver[static_cast<size_t>(in.msg)];
          }
        }
        if (in.deps.empty()) b.firsts[in.sequence].push_back(static_cast<int32_t>(i));
        auto [lt, fresh] = b.last_of.try_emplace(in.sequence, static_cast<int32_t>(i));
        if (in.end_ns >= body[static_cast<size_t>(lt->second)].end_ns) {
          lt->second = static_cast<int32_t>(i);
        }
        auto [pt, pfresh] =
            pair_id.try_emplace({in.sequence, in.token}, static_cast<int32_t>(pairs[x].size()));
        if (pfresh) pairs[x].push_back({in.sequence, in.token});
        b.pair[i] = pt->second;
      }
      for (const auto& [seq, i] : b.last_of) b.last[static_cast<size_t>(i)] = 1;
    }
  }

  const size_t n = index.size();
  std::vector<int64_t> start(n, 0), end(n, -1);  // start accumulates the ready time until it runs
  std::vector<int32_t> waiting(n, 0);
  std::vector<uint32_t> next_on_resource(n, kNone), why(n, kNone);
  std::vector<Why> why_kind(n, Why::kUnset);
  std::vector<uint8_t> started(n, 0);

  // Resource order: planned start order, phase after phase. Within a phase, copy j of a body
  // instruction starting at t runs at t + j x stride = (q + j) x stride + r: window by window
  // (w = q + j), by r, then by copy and body order.
  std::vector<uint32_t> last_on_resource(resources.size(), kNone);
  for (size_t x = 0; x < phases; ++x) {
    const Phase& ph = s.phases[x];
    const int64_t copies = index.copies(x);
    for (size_t c = 0; c < chips; ++c) {
      const std::vector<Instruction>& body = body_of(x, c);
      std::map<int32_t, std::vector<int32_t>> by_resource;
      for (size_t i = 0; i < body.size(); ++i) {
        if (bodies[x][c].resource[i] >= 0) {
          by_resource[bodies[x][c].resource[i]].push_back(static_cast<int32_t>(i));
        }
      }
      for (auto& [r, list] : by_resource) {
        auto q_of = [&](int32_t i) {
          return FloorDiv(body[static_cast<size_t>(i)].start_ns, ph.slot_ns);
        };
        auto r_of = [&](int32_t i) {
          return body[static_cast<size_t>(i)].start_ns - q_of(i) * ph.slot_ns;
        };
        std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
          return std::make_tuple(r_of(a), -q_of(a), a) < std::make_tuple(r_of(b), -q_of(b), b);
        });
        int64_t qmin = INT64_MAX, qmax = INT64_MIN;
        for (int32_t i : list) qmin = std::min(qmin, q_of(i)), qmax = std::max(qmax, q_of(i));
        uint32_t& last = last_on_resource[static_cast<size_t>(r)];
        for (int64_t w = qmin; w <= copies - 1 + qmax; ++w) {
          for (int32_t i : list) {
            const int64_t j = w - q_of(i);
            if (j < 0 || j >= copies) continue;
            const auto id = static_cast<uint32_t>(index.Id({x, j, c, static_cast<size_t>(i)}));
            if (last != kNone) {
              next_on_resource[last] = id;
              ++waiting[id];
            }
            last = id;
          }
        }
      }
    }
  }
  // Deps, messages, and a slot's previous pass.
  for (size_t x = 0; x < phases; ++x) {
    const Phase& ph = s.phases[x];
    for (int64_t j = 0; j < index.copies(x); ++j) {
      for (size_t c = 0; c < chips; ++c) {
        const std::vector<Instruction>& body = body_of(x, c);
        for (size_t i = 0; i < body.size(); ++i) {
          const Instruction& in = body[i];
          const size_t id = index.Id({x, j, c, i});
          waiting[id] += static_cast<int32_t>(in.deps.size()) + (Receives(in) ? 1 : 0);
          if (!in.deps.empty()) continue;
          if (j >= ph.slots) {
            ++waiting[id];
          } else if (x > 0 && !body_of(x - 1, c).empty() &&
                     bodies[x - 1][c].last_of.count(in.sequence) > 0) {
            ++waiting[id];
          } else if (Computes(in)) {
            // A slot's first pass enters the pipeline at its planned time.
            start[id] = ph.start_ns + in.start_ns + j * ph.slot_ns;
          }
        }
      }
    }
  }

  std::vector<bool> failed(static_cast<size_t>(topo.link_count()), false);
  for (LinkId l : o.failed_links) {
    if (l >= 0 && l < topo.link_count()) failed[static_cast<size_t>(l)] = true;
  }
  uint64_t rng = o.seed;
  // Min-heap of (time, phase: 0 = end before 1 = start, chip, instance).
  using Event = std::tuple<int64_t, int, ChipId, uint32_t>;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue;
  std::vector<ChipId> chip_id(chips);
  for (size_t c = 0; c < chips; ++c) chip_id[c] = s.chips[c].chip;
  for (size_t id = 0; id < n; ++id) {
    if (waiting[id] == 0) {
      queue.emplace(start[id], 1, chip_id[index.At(id).chip], static_cast<uint32_t>(id));
    }
  }
  auto notify = [&](size_t id, int64_t t, uint32_t from, Why kind, ChipId chip) {
    // The binding predecessor: the last ready; on a tie, the instance's own inputs over the
    // resource's previous user (which only happened to finish then too).
    if (t > start[id] || why_kind[id] == Why::kUnset ||
        (t == start[id] && why_kind[id] == Why::kResource && kind != Why::kResource)) {
      start[id] = std::max(start[id], t);
      why[id] = from;
      why_kind[id] = kind;
    }
    if (--waiting[id] == 0) queue.emplace(start[id], 1, chip, static_cast<uint32_t>(id));
  };
  auto copy_of = [&](const Phase& ph, const Instruction& in, int64_t j) {
    Instruction out = in;
    out.token += static_cast<int32_t>(j / ph.slots);
    out.sequence += static_cast<int32_t>(j % ph.slots);
    return out;
  };
  int64_t events = 0;
  while (!queue.empty()) {
    const auto [t, phase, chip, gi] = queue.top();
    queue.pop();
    ++events;
    const size_t id = gi;
    const InstanceIndex::Where w = index.At(id);
    const Phase& ph = s.phases[w.phase];
    const std::vector<Instruction>& body = body_of(w.phase, w.chip);
    const Instruction& in = body[w.index];
    const Body& b = bodies[w.phase][w.chip];
    if (phase == 1) {
      start[id] = t;
      started[id] = 1;
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
        case InstrKind::kForward: {
          if (in.link < 0 || in.link >= topo.link_count() || failed[static_cast<size_t>(in.link)]) {
            result.ok = false;
            result.failure_ns = t;
            result.failure = "chip " + std::to_string(chip) + " link " + std::to_string(in.link) +
                             " (to chip " + std::to_string(in.peer) + ") failed at " +
                             std::to_string(t) + " ns during " +
                             DescribeStep(copy_of(ph, in, w.copy));
            queue = {};
            continue;
          }
          const topology::Link& link = topo.link(in.link);
          d = link_model::OccupancyNs(link, in.bytes, o.link_params);
          if (b.peer_chip[w.index] >= 0) {
            const auto pc = static_cast<size_t>(b.peer_chip[w.index]);
            const auto pi = static_cast<size_t>(b.peer_index[w.index]);
            const Instruction& rx = body_of(w.phase, pc)[pi];
            const int64_t ready =
                rx.kind == InstrKind::kForward && rx.link >= 0 && rx.link < topo.link_count()
                    ? link_model::ForwardEarliestNs(t, link, topo.link(rx.link), rx.bytes,
                                                    o.link_params)
                    : link_model::ArrivalNs(t, link, in.bytes, o.link_params);
            notify(index.Id({w.phase, w.copy, pc, pi}), ready, gi, Why::kMessage, chip_id[pc]);
          }
          break;
        }
        case InstrKind::kRecv:
          break;
      }
      queue.emplace(t + d, 0, chip, gi);
      continue;
    }
    end[id] = t;
    const size_t copy_base = index.Id({w.phase, w.copy, w.chip, 0});
    for (uint32_t k = b.rdep_begin[w.index]; k < b.rdep_begin[w.index + 1]; ++k) {
      notify(copy_base + static_cast<size_t>(b.rdep[k]), t, gi, Why::kDep, chip);
    }
    if (next_on_resource[id] != kNone) notify(next_on_resource[id], t, gi, Why::kResource, chip);
    if (b.last[w.index]) {
      // The slot's next pass on this chip: `slots` copies on, or the next phase's first pass.
      const int64_t copies = index.copies(w.phase);
      if (w.copy + ph.slots < copies) {
        auto it = b.firsts.find(in.sequence);
        if (it != b.firsts.end()) {
          const size_t next_base = index.Id({w.phase, w.copy + ph.slots, w.chip, 0});
          for (int32_t f : it->second) {
            notify(next_base + static_cast<size_t>(f), t, gi, Why::kPass, chip);
          }
        }
      } else if (w.phase + 1 < phases && w.copy >= copies - ph.slots) {
        const size_t nx = w.phase + 1;
        const int64_t j = w.copy - (copies - ph.slots);
        auto it = bodies[nx][w.chip].firsts.find(in.sequence);
        if (j < index.copies(nx) && it != bodies[nx][w.chip].firsts.end()) {
          const size_t next_base = index.Id({nx, j, w.chip, 0});
          for (int32_t f : it->second) {
            notify(next_base + static_cast<size_t>(f), t, gi, Why::kPass, chip);
          }
        }
      }
    }
  }
  if (result.ok) {
    for (size_t id = 0; id < n; ++id) {
      if (end[id] >= 0) continue;
      const InstanceIndex::Where w = index.At(id);
      const Instruction in = copy_of(s.phases[w.phase], body_of(w.phase, w.chip)[w.index], w.copy);
      result.ok = false;
      result.failure = "chip " + std::to_string(chip_id[w.chip]) + " never ran " +
                       DescribeStep(in) + " #" + std::to_string(w.index) +
                       ": its inputs never arrived (deadlock or a message never sent)";
      break;
    }
  }

  // Metrics: spans of every (sequence, token), busy times.
  SimMetrics& m = result.metrics;
  m.events = events;
  m.predicted_token_latency_ns = s.token_latency_ns;
  std::map<std::pair<int32_t, int32_t>, std::pair<int64_t, int64_t>> span;  // (seq, token)
  int64_t first = INT64_MAX, last = 0, decode_first = INT64_MAX, decode_last = 0;
  std::vector<int64_t> compute_busy(chips, 0), link_busy(resources.size(), 0);
  for (size_t x = 0; x < phases; ++x) {
    const Phase& ph = s.phases[x];
    const size_t np = pairs[x].size();
    for (int64_t j = 0; j < index.copies(x); ++j) {
      std::vector<std::pair<int64_t, int64_t>> sp(np, {INT64_MAX, INT64_MIN});
      for (size_t c = 0; c < chips; ++c) {
        const std::vector<Instruction>& body = body_of(x, c);
        const Body& b = bodies[x][c];
        const size_t base = index.Id({x, j, c, 0});
        for (size_t i = 0; i < body.size(); ++i) {
          const size_t id = base + i;
          if (end[id] < 0) continue;
          auto& p = sp[static_cast<size_t>(b.pair[i])];
          p.first = std::min(p.first, start[id]);
          p.second = std::max(p.second, end[id]);
          const bool decode = body[i].token + j / ph.slots >= 0;
          if (decode && b.resource[i] >= 0) {
            const int64_t busy = end[id] - start[id];
            if (Computes(body[i])) {
              compute_busy[c] += busy;
            } else {
              link_busy[static_cast<size_t>(b.resource[i])] += busy;
            }
          }
        }
      }
      for (size_t p = 0; p < np; ++p) {
        if (sp[p].first == INT64_MAX) continue;
        const auto key = std::make_pair(pairs[x][p].first + static_cast<int32_t>(j % ph.slots),
                                        pairs[x][p].second + static_cast<int32_t>(j / ph.slots));
        auto [it, fresh] = span.try_emplace(key, sp[p]);
        it->second.first = std::min(it->second.first, sp[p].first);
        it->second.second = std::max(it->second.second, sp[p].second);
        first = std::min(first, sp[p].first);
        last = std::max(last, sp[p].second);
        if (key.second >= 0) {
          decode_first = std::min(decode_first, sp[p].first);
          decode_last = std::max(decode_last, sp[p].second);
        }
      }
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
  double busy_sum = 0, stage_chips = 0;
  for (size_t c = 0; c < chips; ++c) {
    if (s.chips[c].stage < 0) continue;
    busy_sum += static_cast<double>(compute_busy[c]);
    stage_chips += 1;
    if (mk > 0) {
      m.compute_utilization_max =
          std::max(m.compute_utilization_max, static_cast<double>(compute_busy[c]) / mk);
    }
  }
  const double mean_busy = stage_chips > 0 ? busy_sum / stage_chips : 0;
  m.compute_utilization = Pair(mk > 0 ? mean_busy / mk : 0,
                               ideal_makespan > 0 ? std::min(1.0, mean_busy / ideal_makespan) : 0);
  double link_sum = 0;
  size_t used_links = 0;
  for (size_t r = chips; r < resources.size(); ++r) {
    if (link_busy[r] == 0) continue;
    ++used_links;
    link_sum += static_cast<double>(link_busy[r]);
    if (mk > 0) {
      m.link_utilization_max =
          std::max(m.link_utilization_max, static_cast<double>(link_busy[r]) / mk);
    }
  }
  const double mean_link = used_links == 0 ? 0 : link_sum / static_cast<double>(used_links);
  m.link_utilization = Pair(mk > 0 ? mean_link / mk : 0,
                            ideal_makespan > 0 ? std::min(1.0, mean_link / ideal_makespan) : 0);
  m.bubble_fraction = Pair(1.0 - m.compute_utilization.value, 1.0 - m.compute_utilization.bound);

  // The critical path of sequence 0's last decode token: back from its last end to the start of
  // its pass (or its previous token's last end), by the predecessor that was ready last.
  if (result.ok && count > 0) {
    int32_t token = -1;
    for (const auto& [key, se] : span) {
      if (key.first == 0) token = std::max(token, key.second);
    }
    const auto& [final_first, final_last] = span.at({0, token});
    auto prev_span = span.find({0, token - 1});
    const int64_t begin = prev_span != span.end() ? prev_span->second.second : final_first;
    size_t cur = kNone;  // the last instance of that token ending then
    for (size_t x = 0; x < phases; ++x) {
      const Phase& ph = s.phases[x];
      for (int64_t j = 0; j < index.copies(x); ++j) {
        for (size_t p = 0; p < pairs[x].size(); ++p) {
          if (pairs[x][p].first + j % ph.slots != 0 || pairs[x][p].second + j / ph.slots != token) {
            continue;
          }
          for (size_t c = 0; c < chips; ++c) {
            const size_t base = index.Id({x, j, c, 0});
            for (size_t i = 0; i < body_of(x, c).size(); ++i) {
              if (bodies[x][c].pair[i] == static_cast<int32_t>(p) && end[base + i] == final_last) {
                cur = base + i;
              }
            }
          }
        }
      }
    }
    std::map<std::string, std::map<int32_t, int64_t>> by_what;  // what -> stage -> ns
    auto charge = [&](size_t id, int64_t from, int64_t to, const std::string& what) {
      from = std::max(from, begin);
      if (to <= from) return;
      const InstanceIndex::Where w = index.At(id);
      by_what[what][body_of(w.phase, w.chip)[w.index].stage] += to - from;
      result.critical_path.push_back({id, from, to, what});
    };
    auto transfer_what = [](Tag tag) -> std::string {
      switch (tag) {
        case Tag::kActivation:
          return "stage-to-stage activations";
        case Tag::kToken:
          return "token return";
        case Tag::kGather:
          return "sampling gather transfers";
        default:
          return "all-reduce transfers";
      }
    };
    auto what_of = [&](const Instruction& in) -> std::string {
      if (in.kind == InstrKind::kCompute) return "compute";
      if (in.kind == InstrKind::kReduce) return "collective reduce steps";
      return transfer_what(in.tag);
    };
    // Per phase: message -> its sender (chip, body index).
    std::vector<std::vector<std::pair<int32_t, int32_t>>> sender(phases);
    for (size_t x = 0; x < phases; ++x) {
      sender[x].assign(static_cast<size_t>(s.phases[x].messages), {-1, -1});
      for (size_t c = 0; c < chips; ++c) {
        const std::vector<Instruction>& body = body_of(x, c);
        for (size_t i = 0; i < body.size(); ++i) {
          if (Transmits(body[i]) && body[i].msg >= 0 && body[i].msg < s.phases[x].messages) {
            sender[x][static_cast<size_t>(body[i].msg)] = {static_cast<int32_t>(c),
                                                           static_cast<int32_t>(i)};
          }
        }
      }
    }
    // Walk back: each instance's own work, then what it waited for. Its own inputs (deps, its
    // message, its slot's previous pass) made it ready; a later start is a busy resource's
    // (another slot's work, or this token's own earlier transfer on the same link).
    int64_t t = final_last;
    while (cur != kNone && t > begin) {
      const InstanceIndex::Where w = index.At(cur);
      const Instruction& in = body_of(w.phase, w.chip)[w.index];
      charge(cur, start[cur], t, what_of(in));
      t = std::min(t, start[cur]);
      int64_t ready = INT64_MIN;
      size_t input = kNone;
      bool by_message = false;
      const size_t copy_base = index.Id({w.phase, w.copy, w.chip, 0});
      for (int32_t d : in.deps) {
        const size_t id = copy_base + static_cast<size_t>(d);
        if (end[id] > ready) ready = end[id], input = id, by_message = false;
      }
      if (Receives(in) && in.in_msg >= 0 && in.in_msg < s.phases[w.phase].messages) {
        const auto [sc, si] = sender[w.phase][static_cast<size_t>(in.in_msg)];
        if (sc >= 0) {
          const size_t id =
              index.Id({w.phase, w.copy, static_cast<size_t>(sc), static_cast<size_t>(si)});
          const Instruction& tx =
              body_of(w.phase, static_cast<size_t>(sc))[static_cast<size_t>(si)];
          const topology::Link& link = topo.link(tx.link);
          const int64_t arrival =
              in.kind == InstrKind::kForward && in.link >= 0
                  ? link_model::ForwardEarliestNs(start[id], link, topo.link(in.link), in.bytes,
                                                  o.link_params)
                  : link_model::ArrivalNs(start[id], link, tx.bytes, o.link_params);
          if (arrival > ready) ready = arrival, input = id, by_message = true;
        }
      }
      if (why_kind[cur] == Why::kPass) break;  // its slot's previous pass: the token before
      if (ready < start[cur] && why_kind[cur] == Why::kResource) {
        const size_t busy = why[cur];
        const InstanceIndex::Where bw = index.At(busy);
        const bool ours = bw.phase == w.phase && bw.copy == w.copy;
        const Instruction& b = body_of(bw.phase, bw.chip)[bw.index];
        charge(busy, std::max(ready, begin), t,
               ours ? what_of(b)
                    : (Computes(b) ? "waiting for another slot on a compute unit"
                                   : "waiting for another slot on a link"));
        t = std::max(ready, begin);
      }
      if (input == kNone) break;
      if (by_message) {
        const InstanceIndex::Where sw = index.At(input);
        charge(input, start[input], t, transfer_what(body_of(sw.phase, sw.chip)[sw.index].tag));
        t = std::min(t, start[input]);
      } else {
        t = std::min(t, end[input]);
      }
      cur = input;
    }
    if (t > begin && cur != kNone) charge(cur, begin, t, "waiting for the slot's next pass");
    std::reverse(result.critical_path.begin(), result.critical_path.end());
    for (const auto& [what, stages] : by_what) {
      GapShare g;
      g.what = what;
      for (const auto& [stage, ns] : stages) {
        g.ns += ns;
        if (ns > g.stage_ns) g.stage = stage, g.stage_ns = ns;
      }
      result.gap.push_back(g);
    }
    std::stable_sort(result.gap.begin(), result.gap.end(),
                     [](const GapShare& a, const GapShare& b) { return a.ns > b.ns; });
  }

  if (o.keep_times) {
    result.instance_start_ns.resize(n);
    for (size_t id = 0; id < n; ++id) result.instance_start_ns[id] = started[id] ? start[id] : -1;
    result.instance_end_ns = std::move(end);
  }
  return result;
}

SimResult Simulate(const GlobalSchedule& schedule, const topology::Topology& topo,
                   const SimulateOptions& o) {
  // A modulo schedule runs as its explicit form, so the per-instruction times index Unroll's
  // programs (what traces show).
  const GlobalSchedule unrolled =
      schedule.iterations > 0
          ? Unroll(schedule, o.iterations > 0 ? o.iterations : schedule.iterations)
          : GlobalSchedule{};
  const GlobalSchedule& g = schedule.iterations > 0 ? unrolled : schedule;
  const CompactSchedule view = AsCompact(g);
  SimulateOptions so = o;
  so.keep_times = true;
  SimResult r = Simulate(view, topo, so);
  if (o.keep_times) {
    r.start_ns.resize(g.programs.size());
    r.end_ns.resize(g.programs.size());
    size_t id = 0;
    for (size_t p = 0; p < g.programs.size(); ++p) {
      const size_t len = g.programs[p].instructions.size();
      r.start_ns[p].assign(r.instance_start_ns.begin() + static_cast<std::ptrdiff_t>(id),
                           r.instance_start_ns.begin() + static_cast<std::ptrdiff_t>(id + len));
      r.end_ns[p].assign(r.instance_end_ns.begin() + static_cast<std::ptrdiff_t>(id),
                         r.instance_end_ns.begin() + static_cast<std::ptrdiff_t>(id + len));
      id += len;
    }
  }
  r.instance_start_ns.clear();
  r.instance_end_ns.clear();
  return r;
}

}  // namespace lockstep::schedule
