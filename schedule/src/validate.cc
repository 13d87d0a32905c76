#include "lockstep/schedule/validate.h"

#include <algorithm>
#include <map>
#include <tuple>

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
    CheckMessages();
    for (size_t p = 0; p < s_.programs.size() && !Full(); ++p) CheckMemory(p);
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
        directions_[{in.link, prog.chip}].push_back(w);
        if (!senders_.emplace(in.msg, w).second) {
          Add(Name(w) + ": message " + std::to_string(in.msg) + " is sent twice");
        }
      }
      if (Receives(in)) receivers_[in.in_msg].push_back(w);
    }
  }

  void CheckLinks() {
    for (auto& [key, list] : directions_) {
      std::sort(list.begin(), list.end(), [&](Where a, Where b) {
        return std::tie(At(a).start_ns, a.index) < std::tie(At(b).start_ns, b.index);
      });
      for (size_t k = 1; k < list.size() && !Full(); ++k) {
        if (At(list[k]).start_ns < At(list[k - 1]).end_ns) {
          Add(Name(list[k]) + ": overlaps " + DescribeStep(At(list[k - 1])) + " on link " +
              std::to_string(key.first) + " from chip " + std::to_string(key.second) + " (busy " +
              T(At(list[k - 1]).start_ns) + " to " + T(At(list[k - 1]).end_ns) +
              "): one transfer at a time per direction");
        }
      }
    }
  }

  void CheckMessages() {
    for (const auto& [msg, w] : senders_) {
      if (Full()) return;
      auto it = receivers_.find(msg);
      if (it == receivers_.end()) {
        Add(Name(w) + ": message " + std::to_string(msg) + " is never received by chip " +
            std::to_string(At(w).peer));
        continue;
      }
      if (it->second.size() > 1) {
        Add(Name(w) + ": message " + std::to_string(msg) + " is received " +
            std::to_string(it->second.size()) + " times");
      }
      const Where r = it->second.front();
      const Instruction& in = At(w);
      const Instruction& rx = At(r);
      if (s_.programs[r.program].chip != in.peer || rx.in_link != in.link ||
          rx.in_peer != s_.programs[w.program].chip) {
        Add(Name(r) + ": receives message " + std::to_string(msg) + " which " + Name(w) +
            " sends elsewhere");
        continue;
      }
      const int64_t arrival =
          in.start_ns + HopTimeNs(topo_.link(in.link), in.bytes, o_.link_params);
      if (rx.start_ns < arrival) {
        Add(Name(r) + ": starts at " + T(rx.start_ns) + " before message " + std::to_string(msg) +
            " arrives at " + T(arrival));
      }
      arrival_[{r.program, r.index}] = arrival;
    }
    for (const auto& [msg, list] : receivers_) {
      if (!senders_.count(msg))
        Add(Name(list.front()) + ": message " + std::to_string(msg) + " is never sent");
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
      auto a = arrival_.find({p, i});
      const int64_t from = a == arrival_.end() ? in.start_ns : a->second;
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
  std::map<std::pair<LinkId, ChipId>, std::vector<Where>> directions_;
  std::map<int64_t, Where> senders_;
  std::map<int64_t, std::vector<Where>> receivers_;
  std::map<std::pair<size_t, size_t>, int64_t> arrival_;
};

}  // namespace

std::vector<std::string> Validate(const GlobalSchedule& schedule, const topology::Topology& topo,
                                  const ValidateOptions& options) {
  return Checker(schedule, topo, options).Run();
}

}  // namespace lockstep::schedule
