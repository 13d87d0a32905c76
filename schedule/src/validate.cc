#include "lockstep/schedule/validate.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "link_model.h"
#include "modulo.h"

namespace lockstep::schedule {
namespace {

bool Transmits(const Instruction& in) {
  return in.kind == InstrKind::kSend || in.kind == InstrKind::kForward;
}
bool Receives(const Instruction& in) {
  return in.kind == InstrKind::kRecv || in.kind == InstrKind::kForward;
}
bool Computes(const Instruction& in) {
  return in.kind == InstrKind::kCompute || in.kind == InstrKind::kReduce;
}
std::string T(int64_t ns) { return std::to_string(ns) + " ns"; }

// Checks a compact schedule phase by phase: each body against the topology and the link model,
// the body's messages, its reservations folded modulo the slot stride (every copy), the passes of
// a slot in order, memory, and the boundaries between phases.
class Checker {
 public:
  Checker(const CompactSchedule& s, const topology::Topology& topo, const ValidateOptions& o)
      : s_(s), topo_(topo), o_(o) {}

  std::vector<std::string> Run() {
    for (size_t x = 0; x < s_.phases.size(); ++x) {
      const Phase& ph = s_.phases[x];
      if (ph.passes < 1 || ph.slots < 1 || ph.slot_ns < 1 || ph.messages < 0 || ph.msg_base < 0) {
        Add("phase " + std::to_string(x) + " (" + std::string(PhaseKindName(ph.kind)) +
            "): passes, slots and the slot stride must be >= 1, message ids >= 0");
        return problems_;
      }
    }
    ChipId prev = -1;
    for (const CompactChip& c : s_.chips) {
      if (!topo_.has_chip(c.chip) || c.chip <= prev || c.bodies.size() != s_.phases.size()) {
        Add("chip " + std::to_string(c.chip) + " is not in " + topo_.name() +
            ", or chips are not sorted by id, or it has " + std::to_string(c.bodies.size()) +
            " bodies for " + std::to_string(s_.phases.size()) + " phases");
        return problems_;
      }
      prev = c.chip;
    }
    for (size_t x = 0; x < s_.phases.size() && !Full(); ++x) CheckPhase(x);
    for (size_t x = 1; x < s_.phases.size() && !Full(); ++x) CheckBoundary(x);
    return problems_;
  }

 private:
  struct Where {
    size_t chip = 0;  // index into s_.chips
    size_t index = 0;
  };
  struct Msg {
    int64_t msg;
    Where w;
  };

  bool Full() const { return problems_.size() >= o_.max_problems; }
  void Add(const std::string& m) {
    if (!Full()) problems_.push_back(m);
  }
  const Instruction& At(size_t x, Where w) const { return s_.chips[w.chip].bodies[x][w.index]; }
  std::string Name(size_t x, Where w) const {
    const Instruction& in = At(x, w);
    std::string s = "chip " + std::to_string(s_.chips[w.chip].chip);
    if (in.link >= 0) {
      s += " link " + std::to_string(in.link) + " (to chip " + std::to_string(in.peer) + ")";
    }
    if (in.in_link >= 0) {
      s +=
          " link " + std::to_string(in.in_link) + " (from chip " + std::to_string(in.in_peer) + ")";
    }
    return s + " " + DescribeStep(in) + " #" + std::to_string(w.index);
  }
  std::string Repeats(const Phase& ph) const {
    return ph.copies() > 1 ? " (copies repeat every " + T(ph.slot_ns) + ")" : "";
  }

  void CheckPhase(size_t x) {
    senders_.clear();
    receivers_.clear();
    arrival_.assign(s_.chips.size(), {});
    for (size_t c = 0; c < s_.chips.size() && !Full(); ++c) {
      arrival_[c].assign(s_.chips[c].bodies[x].size(), INT64_MIN);
      CheckBody(x, c);
    }
    CheckMessages(x);
    for (size_t c = 0; c < s_.chips.size() && !Full(); ++c) CheckMemory(x, c);
  }

  void CheckBody(size_t x, size_t c) {
    const Phase& ph = s_.phases[x];
    const ChipId chip = s_.chips[c].chip;
    const std::vector<Instruction>& body = s_.chips[c].bodies[x];
    int64_t last_start = INT64_MIN;
    std::vector<modulo::Interval> compute;
    std::map<LinkId, std::vector<modulo::Interval>> out;
    for (size_t i = 0; i < body.size() && !Full(); ++i) {
      const Where w{c, i};
      const Instruction& in = body[i];
      if (in.start_ns < last_start) {
        Add(Name(x, w) + ": starts at " + T(in.start_ns) + ", before the previous instruction (" +
            T(last_start) + "): program order must follow planned time");
      }
      last_start = std::max(last_start, in.start_ns);
      for (int32_t d : in.deps) {
        if (d < 0 || static_cast<size_t>(d) >= i) {
          Add(Name(x, w) + ": depends on #" + std::to_string(d) +
              ", which is not an earlier instruction");
        } else if (body[static_cast<size_t>(d)].end_ns > in.start_ns) {
          Add(Name(x, w) + ": starts at " + T(in.start_ns) + " before its input #" +
              std::to_string(d) + " (" + DescribeStep(body[static_cast<size_t>(d)]) + ") ends at " +
              T(body[static_cast<size_t>(d)].end_ns));
        }
      }
      const auto id = static_cast<int32_t>(i);
      if (Computes(in)) {
        if (in.duration_ns < 0 || in.end_ns != in.start_ns + in.duration_ns) {
          Add(Name(x, w) + ": ends at " + T(in.end_ns) +
              ", expected start + duration = " + T(in.start_ns + in.duration_ns));
        }
        compute.push_back({in.start_ns, in.end_ns, id});
      } else if (in.kind == InstrKind::kRecv && in.end_ns != in.start_ns) {
        Add(Name(x, w) + ": a receive has no duration, got " + T(in.end_ns - in.start_ns));
      }
      if (Transmits(in)) {
        if (in.link < 0 || in.link >= topo_.link_count()) {
          Add(Name(x, w) + ": no such link in " + topo_.name());
          continue;
        }
        const topology::Link& link = topo_.link(in.link);
        const bool joins = (link.a.chip == chip && link.b.chip == in.peer) ||
                           (link.b.chip == chip && link.a.chip == in.peer);
        if (!joins) {
          Add(Name(x, w) + ": link " + std::to_string(in.link) + " joins chips " +
              std::to_string(link.a.chip) + " and " + std::to_string(link.b.chip) +
              ", not this chip and its peer");
          continue;
        }
        if (link.down) Add(Name(x, w) + ": link is down");
        const int64_t hold = link_model::OccupancyNs(link, in.bytes, o_.link_params);
        if (in.end_ns != in.start_ns + hold) {
          Add(Name(x, w) + ": transfer ends at " + T(in.end_ns) + ", expected start + " + T(hold));
        }
        out[in.link].push_back({in.start_ns, in.end_ns, id});
        if (in.msg < 0 || in.msg >= ph.messages) {
          Add(Name(x, w) + ": message " + std::to_string(in.msg) +
              " is outside the phase's ids 0.." + std::to_string(ph.messages - 1));
        }
        senders_.push_back({in.msg, w});
      }
      if (Receives(in)) receivers_.push_back({in.in_msg, w});
    }
    // Every copy's reservations: the body's, folded modulo the stride, must not meet.
    const modulo::Overlap oc = modulo::LargestOverlap(compute, ph.slot_ns);
    if (oc.amount > 0) {
      Add(Name(x, {c, static_cast<size_t>(oc.second)}) + ": compute overlaps " +
          Name(x, {c, static_cast<size_t>(oc.first)}) + " by " + T(oc.amount) + Repeats(ph));
    }
    for (const auto& [link, intervals] : out) {
      const modulo::Overlap ol = modulo::LargestOverlap(intervals, ph.slot_ns);
      if (ol.amount <= 0) continue;
      const Instruction& busy = body[static_cast<size_t>(ol.first)];
      Add(Name(x, {c, static_cast<size_t>(ol.second)}) + ": overlaps " + DescribeStep(busy) +
          " on link " + std::to_string(link) + " from chip " + std::to_string(chip) + " (busy " +
          T(busy.start_ns) + " to " + T(busy.end_ns) + "): one transfer at a time per direction" +
          Repeats(ph));
    }
    // A slot's next pass on this chip starts after this one ended here.
    if (ph.passes > 1) {
      std::map<int32_t, std::pair<size_t, size_t>> span;  // sequence -> (first, last)
      for (size_t i = 0; i < body.size(); ++i) {
        auto [it, fresh] = span.try_emplace(body[i].sequence, i, i);
        if (body[i].start_ns < body[it->second.first].start_ns) it->second.first = i;
        if (body[i].end_ns > body[it->second.second].end_ns) it->second.second = i;
      }
      for (const auto& [seq, fl] : span) {
        const Instruction& first = body[fl.first];
        const Instruction& last = body[fl.second];
        if (first.start_ns + ph.pass_ns() < last.end_ns) {
          Add(Name(x, {c, fl.first}) + ": sequence " + std::to_string(seq) +
              "'s next pass would start at " + T(first.start_ns + ph.pass_ns()) +
              ", before this one ends at " + T(last.end_ns) + " (" + DescribeStep(last) +
              "; passes repeat every " + T(ph.pass_ns()) + ")");
        }
      }
    }
  }

  void CheckMessages(size_t x) {
    auto by_msg = [](const Msg& a, const Msg& b) {
      return std::tie(a.msg, a.w.chip, a.w.index) < std::tie(b.msg, b.w.chip, b.w.index);
    };
    std::sort(senders_.begin(), senders_.end(), by_msg);
    std::sort(receivers_.begin(), receivers_.end(), by_msg);
    for (size_t k = 1; k < senders_.size(); ++k) {
      if (senders_[k].msg == senders_[k - 1].msg) {
        Add(Name(x, senders_[k].w) + ": message " + std::to_string(senders_[k].msg) +
            " is sent twice");
      }
    }
    size_t r = 0;
    for (const Msg& sent : senders_) {
      if (Full()) return;
      while (r < receivers_.size() && receivers_[r].msg < sent.msg) {
        Add(Name(x, receivers_[r].w) + ": message " + std::to_string(receivers_[r].msg) +
            " is never sent");
        ++r;
      }
      size_t count = 0;
      const size_t first = r;
      while (r < receivers_.size() && receivers_[r].msg == sent.msg) ++count, ++r;
      const Instruction& in = At(x, sent.w);
      if (count == 0) {
        Add(Name(x, sent.w) + ": message " + std::to_string(sent.msg) +
            " is never received by chip " + std::to_string(in.peer));
        continue;
      }
      if (count > 1) {
        Add(Name(x, sent.w) + ": message " + std::to_string(sent.msg) + " is received " +
            std::to_string(count) + " times");
      }
      const Where rw = receivers_[first].w;
      const Instruction& rx = At(x, rw);
      const ChipId from = s_.chips[sent.w.chip].chip;
      if (s_.chips[rw.chip].chip != in.peer || rx.in_link != in.link || rx.in_peer != from) {
        Add(Name(x, rw) + ": receives message " + std::to_string(sent.msg) + " which " +
            Name(x, sent.w) + " sends elsewhere");
        continue;
      }
      const topology::Link& link = topo_.link(in.link);
      const int64_t arrival = link_model::ArrivalNs(in.start_ns, link, in.bytes, o_.link_params);
      const int64_t earliest =
          rx.kind == InstrKind::kForward && rx.link >= 0 && rx.link < topo_.link_count()
              ? link_model::ForwardEarliestNs(in.start_ns, link, topo_.link(rx.link), rx.bytes,
                                              o_.link_params)
              : arrival;
      if (rx.start_ns < earliest) {
        Add(Name(x, rw) + ": starts at " + T(rx.start_ns) + " before message " +
            std::to_string(sent.msg) + " arrives at " + T(earliest));
      }
      arrival_[rw.chip][rw.index] = arrival;
    }
    for (; r < receivers_.size() && !Full(); ++r) {
      Add(Name(x, receivers_[r].w) + ": message " + std::to_string(receivers_[r].msg) +
          " is never sent");
    }
  }

  // Resident bytes + live message buffers <= SRAM at every instant of every copy: each buffer
  // (from its arrival until the last instruction reading it ends) folded modulo the stride, as
  // many times as it wraps (conservative: as if every copy ran, before and after).
  void CheckMemory(size_t x, size_t c) {
    const Phase& ph = s_.phases[x];
    const CompactChip& chip = s_.chips[c];
    const std::vector<Instruction>& body = chip.bodies[x];
    const int64_t sram = topo_.spec_of(chip.chip).sram_bytes;
    if (chip.resident_bytes > sram) {
      if (x == 0) {
        Add("chip " + std::to_string(chip.chip) + ": resident " +
            std::to_string(chip.resident_bytes) + " bytes exceed SRAM " + std::to_string(sram));
      }
      return;
    }
    std::vector<int64_t> release(body.size(), INT64_MIN);
    for (size_t i = 0; i < body.size(); ++i) {
      const Instruction& in = body[i];
      if (Receives(in)) release[i] = std::max(release[i], in.end_ns);
      for (int32_t d : in.deps) {
        if (d >= 0 && static_cast<size_t>(d) < i) {
          release[static_cast<size_t>(d)] = std::max(release[static_cast<size_t>(d)], in.end_ns);
        }
      }
    }
    const int64_t period = ph.slot_ns;
    int64_t always = 0;  // bytes of buffers that wrap whole periods
    std::vector<std::tuple<int64_t, int64_t, size_t>> events;  // folded time, +-bytes, index
    for (size_t i = 0; i < body.size(); ++i) {
      const Instruction& in = body[i];
      if (!Receives(in)) continue;
      const int64_t from =
          std::min(in.start_ns, arrival_[c][i] == INT64_MIN ? in.start_ns : arrival_[c][i]);
      const int64_t to = std::max(from, release[i]);
      always += (to - from) / period * in.bytes;
      const int64_t rest = (to - from) % period;
      if (rest == 0) continue;
      const int64_t a = ((from % period) + period) % period;
      events.emplace_back(a, in.bytes, i);
      if (a + rest <= period) {
        events.emplace_back(a + rest, -in.bytes, i);
      } else {  // wraps: live from a to the period's end and from 0
        events.emplace_back(period, -in.bytes, i);
        events.emplace_back(0, in.bytes, i);
        events.emplace_back(a + rest - period, -in.bytes, i);
      }
    }
    std::sort(events.begin(), events.end(), [](const auto& p, const auto& q) {
      return std::make_pair(std::get<0>(p), std::get<1>(p)) <
             std::make_pair(std::get<0>(q), std::get<1>(q));  // frees before allocations
    });
    int64_t live = chip.resident_bytes + always;
    for (const auto& [t, delta, i] : events) {
      live += delta;
      if (live > sram) {
        Add(Name(x, {c, i}) + ": memory " + std::to_string(live) + " bytes at " + T(t) +
            " exceeds SRAM " + std::to_string(sram) + " (resident " +
            std::to_string(chip.resident_bytes) + " + live message buffers" + Repeats(ph) + ")");
        return;
      }
    }
  }

  // Phase x after phase x - 1: on every compute unit and link direction the earlier phase's last
  // copy ends before the later one's first starts, and each slot's first instructions on a chip
  // start after its last ones of the previous phase there.
  void CheckBoundary(size_t x) {
    const Phase& a = s_.phases[x - 1];
    const Phase& b = s_.phases[x];
    const std::string what = std::string(PhaseKindName(b.kind)) + " phase after the " +
                             std::string(PhaseKindName(a.kind)) + " phase";
    for (size_t c = 0; c < s_.chips.size() && !Full(); ++c) {
      const std::vector<Instruction>& pa = s_.chips[c].bodies[x - 1];
      const std::vector<Instruction>& pb = s_.chips[c].bodies[x];
      if (pa.empty() || pb.empty()) continue;
      // Per resource: -1 = compute unit, else the outgoing link.
      std::map<LinkId, int64_t> a_end, b_start;
      std::map<int32_t, int64_t> seq_end, seq_start;
      for (const Instruction& in : pa) {
        const LinkId r = Computes(in) ? -1 : (Transmits(in) ? in.link : -2);
        if (r != -2) a_end[r] = std::max(a_end[r], in.end_ns);
        auto [it, fresh] = seq_end.try_emplace(in.sequence, in.end_ns);
        it->second = std::max(it->second, in.end_ns);
      }
      for (const Instruction& in : pb) {
        const LinkId r = Computes(in) ? -1 : (Transmits(in) ? in.link : -2);
        if (r != -2) {
          auto [it, fresh] = b_start.try_emplace(r, in.start_ns);
          it->second = std::min(it->second, in.start_ns);
        }
        auto [it, fresh] = seq_start.try_emplace(in.sequence, in.start_ns);
        it->second = std::min(it->second, in.start_ns);
      }
      const int64_t a_last = a.start_ns + (a.copies() - 1) * a.slot_ns;
      for (const auto& [r, end] : a_end) {
        auto it = b_start.find(r);
        if (it == b_start.end()) continue;
        if (b.start_ns + it->second < a_last + end) {
          Add("chip " + std::to_string(s_.chips[c].chip) + " " +
              (r < 0 ? std::string("compute unit") : "link " + std::to_string(r)) + ": the " +
              what + " starts at " + T(b.start_ns + it->second) + ", before the previous ends at " +
              T(a_last + end));
          break;
        }
      }
      for (const auto& [seq, end] : seq_end) {
        auto it = seq_start.find(seq);
        if (it == seq_start.end()) continue;
        for (int64_t m : {int64_t{0}, int64_t{b.slots} - 1}) {
          const int64_t prev_end = a.start_ns + end + (a.copies() - b.slots + m) * a.slot_ns;
          const int64_t next_start = b.start_ns + it->second + m * b.slot_ns;
          if (next_start < prev_end) {
            Add("chip " + std::to_string(s_.chips[c].chip) + " slot " + std::to_string(m) +
                ": the " + what + " starts at " + T(next_start) +
                ", before the slot's previous pass ends there at " + T(prev_end));
            break;
          }
        }
      }
    }
  }

  const CompactSchedule& s_;
  const topology::Topology& topo_;
  const ValidateOptions& o_;
  std::vector<std::string> problems_;
  std::vector<Msg> senders_;
  std::vector<Msg> receivers_;
  std::vector<std::vector<int64_t>> arrival_;  // per chip, per instruction; INT64_MIN = none
};

// The reservation tables of an explicit schedule (what a link layer would read) must list
// exactly the transfers of the programs, with the same times and messages.
void CheckTables(const GlobalSchedule& s, std::vector<std::string>& problems, size_t max) {
  struct Use {
    LinkId link;
    ChipId chip;
    int64_t start;
    int64_t end;
    int64_t msg;
  };
  std::vector<Use> uses;
  for (const ChipProgram& p : s.programs) {
    for (const Instruction& in : p.instructions) {
      if (Transmits(in)) uses.push_back({in.link, p.chip, in.start_ns, in.end_ns, in.msg});
    }
  }
  std::sort(uses.begin(), uses.end(), [](const Use& a, const Use& b) {
    return std::tie(a.link, a.chip, a.start, a.msg) < std::tie(b.link, b.chip, b.start, b.msg);
  });
  size_t k = 0, listed = 0;
  for (const LinkTable& t : s.links) {
    for (const Reservation& r : t.reservations) {
      ++listed;
      while (k < uses.size() && std::tie(uses[k].link, uses[k].chip, uses[k].start) <
                                    std::tie(t.link, t.from, r.start_ns)) {
        ++k;
      }
      const bool found = k < uses.size() && uses[k].link == t.link && uses[k].chip == t.from &&
                         uses[k].start == r.start_ns && uses[k].end == r.end_ns &&
                         uses[k].msg == r.msg;
      if (!found) {
        if (problems.size() < max) {
          problems.push_back("chip " + std::to_string(t.from) + " link " + std::to_string(t.link) +
                             ": reservation " + T(r.start_ns) + " to " + T(r.end_ns) +
                             " of message " + std::to_string(r.msg) +
                             " matches no transfer in the programs");
        }
      } else {
        ++k;
      }
    }
  }
  if (listed != uses.size() && problems.size() < max) {
    problems.push_back("reservation tables list " + std::to_string(listed) +
                       " transfers, the programs make " + std::to_string(uses.size()));
  }
}

}  // namespace

std::vector<std::string> Validate(const CompactSchedule& schedule, const topology::Topology& topo,
                                  const ValidateOptions& options) {
  return Checker(schedule, topo, options).Run();
}

std::vector<std::string> Validate(const GlobalSchedule& schedule, const topology::Topology& topo,
                                  const ValidateOptions& options) {
  std::vector<std::string> problems = Checker(AsCompact(schedule), topo, options).Run();
  CheckTables(schedule, problems, options.max_problems);
  return problems;
}

}  // namespace lockstep::schedule
