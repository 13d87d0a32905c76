#include "lockstep/schedule/validate.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "modulo.h"

namespace lockstep::schedule {
namespace {

struct Where {
  size_t program = 0;
  size_t index = 0;
};

class Checker {
 public:
  Checker(const GlobalSchedule& s, const topology::Topology& topo, const ValidateOptions& o)
      : s_(s), topo_(topo), o_(o) {}

  std::vector<std::string> Run() {
    arrival_.resize(s_.programs.size());
    for (size_t p = 0; p < s_.programs.size(); ++p) {
      arrival_[p].assign(s_.programs[p].instructions.size(), INT64_MIN);
    }
    ChipId prev = -1;
    for (size_t p = 0; p < s_.programs.size() && !Full(); ++p) {
      const ChipProgram& prog = s_.programs[p];
      if (!topo_.has_chip(prog.chip) || prog.chip <= prev) {
        Add("program " + std::to_string(p) + ": chip " + std::to_string(prog.chip) + " is not in " +
            topo_.name() + " or programs are not sorted by chip");
        return problems_;
      }
      prev = prog.chip;
      CheckProgram(p);
    }
    CheckLinks();
    CheckTables();
    CheckMessages();
    for (size_t p = 0; p < s_.programs.size() && !Full(); ++p) CheckMemory(p);
    if (s_.iterations > 0) CheckWrap();
    return problems_;
  }

 private:
  bool Full() const { return problems_.size() >= o_.max_problems; }
  void Add(const std::string& m) {
    if (!Full()) problems_.push_back(m);
  }
  const Instruction& At(Where w) const { return s_.programs[w.program].instructions[w.index]; }
  std::string Name(Where w) const {
    const Instruction& in = At(w);
    std::string s = "chip " + std::to_string(s_.programs[w.program].chip);
    if (in.link >= 0)
      s += " link " + std::to_string(in.link) + " (to chip " + std::to_string(in.peer) + ")";
    if (in.in_link >= 0) {
      s +=
          " link " + std::to_string(in.in_link) + " (from chip " + std::to_string(in.in_peer) + ")";
    }
    return s + " " + DescribeStep(in) + " #" + std::to_string(w.index);
  }
  static bool Transmits(const Instruction& in) {
    return in.kind == InstrKind::kSend || in.kind == InstrKind::kForward;
  }
  static bool Receives(const Instruction& in) {
    return in.kind == InstrKind::kRecv || in.kind == InstrKind::kForward;
  }
  static bool Computes(const Instruction& in) {
    return in.kind == InstrKind::kCompute || in.kind == InstrKind::kReduce;
  }
  std::string T(int64_t ns) const { return std::to_string(ns) + " ns"; }

  // Modulo form: the period repeats every repeat_ns. Its compute and link reservations must
  // clear their own shifted copies, and a sequence's next token on a chip must not start before
  // its previous one has ended there (its first instruction + repeat >= its last end).
  void CheckWrap() {
    const int64_t period = s_.repeat_ns;
    if (period <= 0 || s_.msg_stride < 0) {
      Add("modulo schedule: repeat interval " + T(period) + " must be > 0");
      return;
    }
    for (size_t p = 0; p < s_.programs.size() && !Full(); ++p) {
      const ChipProgram& prog = s_.programs[p];
      std::vector<modulo::Interval> compute;
      std::map<LinkId, std::vector<modulo::Interval>> out;
      std::map<int32_t, std::pair<size_t, size_t>> span;  // sequence -> (first, last) index
      for (size_t i = 0; i < prog.instructions.size(); ++i) {
        const Instruction& in = prog.instructions[i];
        const modulo::Interval x{in.start_ns, in.end_ns, static_cast<int32_t>(i)};
        if (Computes(in)) compute.push_back(x);
        if (Transmits(in)) out[in.link].push_back(x);
        auto [it, fresh] = span.try_emplace(in.sequence, i, i);
        if (in.start_ns < prog.instructions[it->second.first].start_ns) it->second.first = i;
        if (in.end_ns > prog.instructions[it->second.second].end_ns) it->second.second = i;
      }
      auto report = [&](const modulo::Overlap& o, const std::string& what) {
        if (o.amount <= 0) return;
        Add(Name({p, static_cast<size_t>(o.first)}) + ": " + what + " overlaps the next period's " +
            DescribeStep(prog.instructions[static_cast<size_t>(o.second)]) + " #" +
            std::to_string(o.second) + " by " + T(o.amount) + " (repeat every " + T(period) + ")");
      };
      report(modulo::LargestOverlap(compute, period), "compute");
      for (const auto& [link, intervals] : out) {
        report(modulo::LargestOverlap(intervals, period), "transfer");
      }
      for (const auto& [seq, fl] : span) {
        const Instruction& first = prog.instructions[fl.first];
        const Instruction& last = prog.instructions[fl.second];
        if (first.start_ns + period < last.end_ns) {
          Add(Name({p, fl.first}) + ": sequence " + std::to_string(seq) +
              "'s next token would start at " + T(first.start_ns + period) +
              ", before this one ends at " + T(last.end_ns) + " (" + DescribeStep(last) +
              "; repeat every " + T(period) + ")");
        }
      }
    }
  }

  void CheckProgram(size_t p) {
    const ChipProgram& prog = s_.programs[p];
    int64_t last_start = INT64_MIN, compute_end = INT64_MIN;
    Where last_compute{};
    for (size_t i = 0; i < prog.instructions.size() && !Full(); ++i) {
      const Where w{p, i};
      const Instruction& in = prog.instructions[i];
      if (in.start_ns < last_start) {
        Add(Name(w) + ": starts at " + T(in.start_ns) + ", before the previous instruction (" +
            T(last_start) + "): program order must follow planned time");
      }
      last_start = std::max(last_start, in.start_ns);
      for (int32_t d : in.deps) {
        if (d < 0 || static_cast<size_t>(d) >= i) {
          Add(Name(w) + ": depends on #" + std::to_string(d) +
              ", which is not an earlier instruction");
        } else if (prog.instructions[static_cast<size_t>(d)].end_ns > in.start_ns) {
          Add(Name(w) + ": starts at " + T(in.start_ns) + " before its input #" +
              std::to_string(d) + " (" + DescribeStep(prog.instructions[static_cast<size_t>(d)]) +
              ") ends at " + T(prog.instructions[static_cast<size_t>(d)].end_ns));
        }
      }
      if (Computes(in)) {
        if (in.duration_ns < 0 || in.end_ns != in.start_ns + in.duration_ns) {
          Add(Name(w) + ": ends at " + T(in.end_ns) +
              ", expected start + duration = " + T(in.start_ns + in.duration_ns));
        }
        if (in.start_ns < compute_end) {
          Add(Name(w) + ": compute overlaps " + Name(last_compute) + " (busy until " +
              T(compute_end) + ")");
        }
        if (in.end_ns > compute_end) {
          compute_end = in.end_ns;
          last_compute = w;
        }
      } else if (in.kind == InstrKind::kRecv && in.end_ns != in.start_ns) {
        Add(Name(w) + ": a receive has no duration, got " + T(in.end_ns - in.start_ns));
      }
      if (Transmits(in)) {
        if (in.link < 0 || in.link >= topo_.link_count()) {
          Add(Name(w) + ": no such link in " + topo_.name());
          continue;
        }
        const topology::Link& link = topo_.link(in.link);
        const bool joins = (link.a.chip == prog.chip && link.b.chip == in.peer) ||
                           (link.b.chip == prog.chip && link.a.chip == in.peer);
        if (!joins) {
          Add(Name(w) + ": link " + std::to_string(in.link) + " joins chips " +
              std::to_string(link.a.chip) + " and " + std::to_string(link.b.chip) +
              ", not this chip and its peer");
          continue;
        }
        if (link.down) Add(Name(w) + ": link is down");
        const int64_t ns = HopTimeNs(link, in.bytes, o_.link_params);
        if (in.end_ns != in.start_ns + ns) {
          Add(Name(w) + ": transfer ends at " + T(in.end_ns) + ", expected start + " + T(ns));
        }
        directions_.push_back({in.link, prog.chip, in.start_ns, w});
        senders_.push_back({in.msg, w});
      }
      if (Receives(in)) receivers_.push_back({in.in_msg, w});
    }
  }

  void CheckLinks() {
    std::sort(directions_.begin(), directions_.end(), [](const Use& x, const Use& y) {
      return std::tie(x.link, x.chip, x.start, x.w.index) <
             std::tie(y.link, y.chip, y.start, y.w.index);
    });
    for (size_t k = 1; k < directions_.size() && !Full(); ++k) {
      const Use& prev = directions_[k - 1];
      const Use& cur = directions_[k];
      if (prev.link != cur.link || prev.chip != cur.chip) continue;
      if (cur.start < At(prev.w).end_ns) {
        Add(Name(cur.w) + ": overlaps " + DescribeStep(At(prev.w)) + " on link " +
            std::to_string(cur.link) + " from chip " + std::to_string(cur.chip) + " (busy " +
            T(At(prev.w).start_ns) + " to " + T(At(prev.w).end_ns) +
            "): one transfer at a time per direction");
      }
    }
  }

  // The reservation tables (what a link layer would read) must list exactly the transfers of
  // the programs, with the same times.
  void CheckTables() {
    size_t k = 0, listed = 0;  // directions_ is sorted by (link, chip, start)
    for (const LinkTable& t : s_.links) {
      for (const Reservation& r : t.reservations) {
        ++listed;
        while (k < directions_.size() &&
               std::tie(directions_[k].link, directions_[k].chip, directions_[k].start) <
                   std::tie(t.link, t.from, r.start_ns)) {
          ++k;
        }
        const bool found = k < directions_.size() && directions_[k].link == t.link &&
                           directions_[k].chip == t.from && directions_[k].start == r.start_ns &&
                           At(directions_[k].w).end_ns == r.end_ns &&
                           At(directions_[k].w).msg == r.msg;
        if (!found) {
          Add("chip " + std::to_string(t.from) + " link " + std::to_string(t.link) +
              ": reservation " + T(r.start_ns) + " to " + T(r.end_ns) + " of message " +
              std::to_string(r.msg) + " matches no transfer in the programs");
          if (Full()) return;
        } else {
          ++k;
        }
      }
    }
    if (listed != directions_.size()) {
      Add("reservation tables list " + std::to_string(listed) + " transfers, the programs make " +
          std::to_string(directions_.size()));
    }
  }

  void CheckMessages() {
    auto by_msg = [](const Msg& x, const Msg& y) {
      return std::tie(x.msg, x.w.program, x.w.index) < std::tie(y.msg, y.w.program, y.w.index);
    };
    std::sort(senders_.begin(), senders_.end(), by_msg);
    std::sort(receivers_.begin(), receivers_.end(), by_msg);
    for (size_t k = 1; k < senders_.size(); ++k) {
      if (senders_[k].msg == senders_[k - 1].msg) {
        Add(Name(senders_[k].w) + ": message " + std::to_string(senders_[k].msg) +
            " is sent twice");
      }
    }
    size_t r = 0;
    for (const Msg& sent : senders_) {
      if (Full()) return;
      while (r < receivers_.size() && receivers_[r].msg < sent.msg) {
        Add(Name(receivers_[r].w) + ": message " + std::to_string(receivers_[r].msg) +
            " is never sent");
        ++r;
      }
      size_t count = 0;
      const size_t first = r;
      while (r < receivers_.size() && receivers_[r].msg == sent.msg) ++count, ++r;
      const Where w = sent.w;
      if (count == 0) {
        Add(Name(w) + ": message " + std::to_string(sent.msg) + " is never received by chip " +
            std::to_string(At(w).peer));
        continue;
      }
      if (count > 1) {
        Add(Name(w) + ": message " + std::to_string(sent.msg) + " is received " +
            std::to_string(count) + " times");
      }
      const Where rw = receivers_[first].w;
      const Instruction& in = At(w);
      const Instruction& rx = At(rw);
      if (s_.programs[rw.program].chip != in.peer || rx.in_link != in.link ||
          rx.in_peer != s_.programs[w.program].chip) {
        Add(Name(rw) + ": receives message " + std::to_string(sent.msg) + " which " + Name(w) +
            " sends elsewhere");
        continue;
      }
      const int64_t arrival =
          in.start_ns + HopTimeNs(topo_.link(in.link), in.bytes, o_.link_params);
      if (rx.start_ns < arrival) {
        Add(Name(rw) + ": starts at " + T(rx.start_ns) + " before message " +
            std::to_string(sent.msg) + " arrives at " + T(arrival));
      }
      arrival_[rw.program][rw.index] = arrival;
    }
    for (; r < receivers_.size() && !Full(); ++r) {
      Add(Name(receivers_[r].w) + ": message " + std::to_string(receivers_[r].msg) +
          " is never sent");
    }
  }

  void CheckMemory(size_t p) {
    const ChipProgram& prog = s_.programs[p];
    const int64_t sram = topo_.spec_of(prog.chip).sram_bytes;
    if (prog.resident_bytes > sram) {
      Add("chip " + std::to_string(prog.chip) + ": resident " +
          std::to_string(prog.resident_bytes) + " bytes exceed SRAM " + std::to_string(sram));
      return;
    }
    std::vector<int64_t> release(prog.instructions.size(), INT64_MIN);
    for (size_t i = 0; i < prog.instructions.size(); ++i) {
      const Instruction& in = prog.instructions[i];
      if (Receives(in)) release[i] = std::max(release[i], in.end_ns);
      for (int32_t d : in.deps) {
        if (d >= 0 && static_cast<size_t>(d) < i) {
          release[static_cast<size_t>(d)] = std::max(release[static_cast<size_t>(d)], in.end_ns);
        }
      }
    }
    std::vector<std::tuple<int64_t, int64_t, size_t>> events;  // time, +-bytes, index
    for (size_t i = 0; i < prog.instructions.size(); ++i) {
      const Instruction& in = prog.instructions[i];
      if (!Receives(in)) continue;
      const int64_t from = arrival_[p][i] == INT64_MIN ? in.start_ns : arrival_[p][i];
      events.emplace_back(from, in.bytes, i);
      events.emplace_back(std::max(from, release[i]), -in.bytes, i);
    }
    std::sort(events.begin(), events.end(), [](const auto& x, const auto& y) {
      return std::make_pair(std::get<0>(x), std::get<1>(x)) <
             std::make_pair(std::get<0>(y), std::get<1>(y));  // frees before allocations
    });
    int64_t live = prog.resident_bytes;
    for (const auto& [t, delta, i] : events) {
      live += delta;
      if (live > sram) {
        Add(Name({p, i}) + ": memory " + std::to_string(live) + " bytes at " + T(t) +
            " exceeds SRAM " + std::to_string(sram) + " (resident " +
            std::to_string(prog.resident_bytes) + " + live message buffers)");
        return;
      }
    }
  }

  const GlobalSchedule& s_;
  const topology::Topology& topo_;
  const ValidateOptions& o_;
  std::vector<std::string> problems_;
  struct Use {
    LinkId link;
    ChipId chip;
    int64_t start;
    Where w;
  };
  struct Msg {
    int64_t msg;
    Where w;
  };
  std::vector<Use> directions_;  // every Send/Forward, by (link, sending chip)
  std::vector<Msg> senders_;
  std::vector<Msg> receivers_;
  std::vector<std::vector<int64_t>> arrival_;  // per program, per instruction; INT64_MIN = none
};

}  // namespace

std::vector<std::string> Validate(const GlobalSchedule& schedule, const topology::Topology& topo,
                                  const ValidateOptions& options) {
  return Checker(schedule, topo, options).Run();
}

}  // namespace lockstep::schedule
