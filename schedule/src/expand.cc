// The compact form's copies written out: explicit programs for the whole run, one decode period
// or one prefill pass, one chip at a time.
#include <algorithm>
#include <map>
#include <numeric>

#include "lockstep/common/error.h"
#include "lockstep/schedule/compact.h"

namespace lockstep::schedule {

std::string_view PhaseKindName(PhaseKind kind) {
  switch (kind) {
    case PhaseKind::kPrefillChunk:
      return "prefill_chunk";
    case PhaseKind::kPrefillLast:
      return "prefill_last";
    case PhaseKind::kDecode:
      return "decode";
  }
  return "?";
}

size_t CompactSchedule::body_instruction_count() const {
  size_t n = 0;
  for (const CompactChip& c : chips) {
    for (const auto& body : c.bodies) n += body.size();
  }
  return n;
}

int64_t CompactSchedule::instruction_count() const {
  int64_t n = 0;
  for (const CompactChip& c : chips) {
    for (size_t x = 0; x < c.bodies.size() && x < phases.size(); ++x) {
      n += static_cast<int64_t>(c.bodies[x].size()) * phases[x].copies();
    }
  }
  return n;
}

int CompactSchedule::PhaseIndex(PhaseKind kind) const {
  for (size_t x = 0; x < phases.size(); ++x) {
    if (phases[x].kind == kind) return static_cast<int>(x);
  }
  return -1;
}

const CompactChip* CompactSchedule::Chip(ChipId chip) const {
  auto it = std::lower_bound(chips.begin(), chips.end(), chip,
                             [](const CompactChip& c, ChipId id) { return c.chip < id; });
  return it != chips.end() && it->chip == chip ? &*it : nullptr;
}

uint64_t PlanDigest(const partition::Plan& plan) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : partition::SerializePlan(plan)) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

namespace {

// Copies [begin, end) of phase `phase`.
struct CopyRange {
  size_t phase = 0;
  int64_t begin = 0;
  int64_t end = 0;
};

// What to write out of one chip: copies of some phases, times and message ids shifted back by
// the rebase figures (so a decode period can start at 0).
struct Selection {
  std::vector<CopyRange> ranges;  // in run order, at most one per phase
  int64_t rebase_ns = 0;
  int64_t rebase_msg = 0;
};

// Per sequence (of the body's instructions): the last-ending one (ties: the later).
std::map<int32_t, int32_t> LastOf(const std::vector<Instruction>& body) {
  std::map<int32_t, int32_t> last;
  for (size_t i = 0; i < body.size(); ++i) {
    auto [it, fresh] = last.try_emplace(body[i].sequence, static_cast<int32_t>(i));
    if (body[i].end_ns >= body[static_cast<size_t>(it->second)].end_ns) {
      it->second = static_cast<int32_t>(i);
    }
  }
  return last;
}

Instruction CopyOf(const Instruction& in, const Phase& ph, int64_t j, const Selection& sel) {
  Instruction out = in;
  const int64_t shift = ph.start_ns + j * ph.slot_ns - sel.rebase_ns;
  out.start_ns += shift;
  out.end_ns += shift;
  out.token += static_cast<int32_t>(j / ph.slots);
  out.sequence += static_cast<int32_t>(j % ph.slots);
  const int64_t msgs = ph.msg_base + j * ph.messages - sel.rebase_msg;
  if (out.msg >= 0) out.msg += msgs;
  if (out.in_msg >= 0) out.in_msg += msgs;
  return out;
}

// One chip's instructions of the selection in planned start order (ties: earlier range, earlier
// copy, body order), with the waits between passes as deps (compact.h).
std::vector<Instruction> ExpandChip(const CompactSchedule& s, const CompactChip& chip,
                                    const Selection& sel) {
  // Instance k = base[r] + (j - begin) x n + i for range r, copy j, body index i.
  std::vector<size_t> base(sel.ranges.size() + 1, 0);
  for (size_t r = 0; r < sel.ranges.size(); ++r) {
    const CopyRange& cr = sel.ranges[r];
    base[r + 1] = base[r] + static_cast<size_t>(cr.end - cr.begin) * chip.bodies[cr.phase].size();
  }
  struct Key {
    int64_t start;
    size_t instance;
    size_t range;
    int64_t copy;
    int32_t index;
  };
  std::vector<Key> keys;
  keys.reserve(base.back());
  for (size_t r = 0; r < sel.ranges.size(); ++r) {
    const CopyRange& cr = sel.ranges[r];
    const Phase& ph = s.phases[cr.phase];
    const std::vector<Instruction>& body = chip.bodies[cr.phase];
    for (int64_t j = cr.begin; j < cr.end; ++j) {
      for (size_t i = 0; i < body.size(); ++i) {
        keys.push_back({body[i].start_ns + ph.start_ns + j * ph.slot_ns,
                        base[r] + static_cast<size_t>(j - cr.begin) * body.size() + i, r, j,
                        static_cast<int32_t>(i)});
      }
    }
  }
  // Instances are numbered in (range, copy, index) order, so a stable sort by start keeps ties in
  // that order.
  std::stable_sort(keys.begin(), keys.end(),
                   [](const Key& a, const Key& b) { return a.start < b.start; });
  std::vector<int32_t> where(keys.size());
  for (size_t g = 0; g < keys.size(); ++g) where[keys[g].instance] = static_cast<int32_t>(g);
  std::vector<std::map<int32_t, int32_t>> last(sel.ranges.size());
  for (size_t r = 0; r < sel.ranges.size(); ++r) last[r] = LastOf(chip.bodies[sel.ranges[r].phase]);

  std::vector<Instruction> out;
  out.reserve(keys.size());
  for (const Key& k : keys) {
    const CopyRange& cr = sel.ranges[k.range];
    const Phase& ph = s.phases[cr.phase];
    const std::vector<Instruction>& body = chip.bodies[cr.phase];
    const Instruction& src = body[static_cast<size_t>(k.index)];
    Instruction in = CopyOf(src, ph, k.copy, sel);
    const size_t copy_base = base[k.range] + static_cast<size_t>(k.copy - cr.begin) * body.size();
    for (int32_t& d : in.deps) d = where[copy_base + static_cast<size_t>(d)];
    if (src.deps.empty()) {
      // The previous pass of this slot on this chip: `slots` copies back, or the previous
      // phase's last pass.
      if (k.copy - ph.slots >= cr.begin) {
        const size_t prev =
            base[k.range] + static_cast<size_t>(k.copy - ph.slots - cr.begin) * body.size();
        in.deps.push_back(where[prev + static_cast<size_t>(last[k.range].at(src.sequence))]);
      } else if (k.copy < ph.slots && k.range > 0 &&
                 sel.ranges[k.range - 1].phase + 1 == cr.phase) {
        const CopyRange& pr = sel.ranges[k.range - 1];
        const Phase& pp = s.phases[pr.phase];
        const int64_t pj = pp.copies() - ph.slots + k.copy;
        auto it = last[k.range - 1].find(src.sequence);
        if (it != last[k.range - 1].end() && pj >= pr.begin && pj < pr.end) {
          const size_t prev =
              base[k.range - 1] + static_cast<size_t>(pj - pr.begin) * chip.bodies[pr.phase].size();
          in.deps.push_back(where[prev + static_cast<size_t>(it->second)]);
        }
      }
    }
    std::sort(in.deps.begin(), in.deps.end());
    in.deps.erase(std::unique(in.deps.begin(), in.deps.end()), in.deps.end());
    out.push_back(std::move(in));
  }
  return out;
}

ChipProgram ProgramOf(const CompactSchedule& s, const CompactChip& chip, const Selection& sel) {
  ChipProgram p;
  p.chip = chip.chip;
  p.stage = chip.stage;
  p.rank = chip.rank;
  p.resident_bytes = chip.resident_bytes;
  p.instructions = ExpandChip(s, chip, sel);
  return p;
}

const CompactChip& ChipOrThrow(const CompactSchedule& s, ChipId chip) {
  const CompactChip* c = s.Chip(chip);
  if (c == nullptr) {
    throw InvalidInput("schedule: chip " + std::to_string(chip) +
                       " has no instructions in the schedule of " + s.model + " on " + s.topology);
  }
  return *c;
}

int DecodeIndex(const CompactSchedule& s) {
  const int x = s.PhaseIndex(PhaseKind::kDecode);
  if (x < 0) throw InvalidInput("schedule: no decode phase");
  return x;
}

Selection DecodePeriodSelection(const CompactSchedule& s) {
  const int x = DecodeIndex(s);
  const Phase& ph = s.phases[static_cast<size_t>(x)];
  return {{{static_cast<size_t>(x), 0, ph.slots}}, ph.start_ns, ph.msg_base};
}

Selection PrefillPassSelection(const CompactSchedule& s, int64_t pass) {
  if (!s.prefill || pass < 0 || pass >= s.prefill_chunks) {
    throw InvalidInput("schedule: no prefill pass " + std::to_string(pass) + " (the schedule has " +
                       std::to_string(s.prefill ? s.prefill_chunks : 0) + ")");
  }
  const int chunk = s.PhaseIndex(PhaseKind::kPrefillChunk);
  const int last = s.PhaseIndex(PhaseKind::kPrefillLast);
  if (pass + 1 < s.prefill_chunks) {
    const int32_t slots = s.phases[static_cast<size_t>(chunk)].slots;
    return {{{static_cast<size_t>(chunk), pass * slots, (pass + 1) * slots}}, 0, 0};
  }
  return {{{static_cast<size_t>(last), 0, s.phases[static_cast<size_t>(last)].slots}}, 0, 0};
}

// The body tables over the selection's copies, in start order.
std::vector<LinkTable> ExpandIncoming(const CompactSchedule& s, const IncomingBodies& incoming,
                                      const Selection& sel) {
  std::map<std::pair<LinkId, ChipId>, LinkTable> tables;
  for (const CopyRange& cr : sel.ranges) {
    if (cr.phase >= incoming.size()) continue;
    const Phase& ph = s.phases[cr.phase];
    for (const LinkTable& body : incoming[cr.phase]) {
      LinkTable& t = tables[{body.link, body.from}];
      t.link = body.link;
      t.from = body.from;
      t.to = body.to;
      for (int64_t j = cr.begin; j < cr.end; ++j) {
        const int64_t shift = ph.start_ns + j * ph.slot_ns - sel.rebase_ns;
        const int64_t msgs = ph.msg_base + j * ph.messages - sel.rebase_msg;
        for (const Reservation& r : body.reservations) {
          t.reservations.push_back({r.start_ns + shift, r.end_ns + shift, r.msg + msgs});
        }
      }
    }
  }
  std::vector<LinkTable> out;
  for (auto& [key, t] : tables) {
    std::stable_sort(
        t.reservations.begin(), t.reservations.end(),
        [](const Reservation& a, const Reservation& b) { return a.start_ns < b.start_ns; });
    out.push_back(std::move(t));
  }
  return out;
}

// Every chip's program over the selection, and the link tables they make.
GlobalSchedule ExpandAll(const CompactSchedule& s, const Selection& sel) {
  GlobalSchedule g;
  g.model = s.model;
  g.topology = s.topology;
  g.sequences = s.sequences;
  g.batch = s.batch;
  g.stages = s.stages;
  g.token_latency_ns = s.token_latency_ns;
  g.cycle_ns = s.cycle_ns;
  g.period_ns = s.period_ns;
  g.prefill = s.prefill;
  g.prompt_len = s.prompt_len;
  g.prompt_bucket = s.prompt_bucket;
  g.prefill_chunks = s.prefill_chunks;
  g.prefill_chunk_tokens = s.prefill_chunk_tokens;
  g.prefill_peak_bytes = s.prefill_peak_bytes;
  g.time_to_first_token_ns = s.time_to_first_token_ns;
  g.prefill_compute_path_ns = s.prefill_compute_path_ns;
  g.compute_path_ns = s.compute_path_ns;
  g.slowest_stage_compute_ns = s.slowest_stage_compute_ns;
  std::map<std::pair<LinkId, ChipId>, LinkTable> tables;
  for (const CompactChip& c : s.chips) {
    ChipProgram p = ProgramOf(s, c, sel);
    if (p.instructions.empty()) continue;
    for (const Instruction& in : p.instructions) {
      g.makespan_ns = std::max(g.makespan_ns, in.end_ns);
      if (in.kind == InstrKind::kSend || in.kind == InstrKind::kForward) {
        LinkTable& t = tables[{in.link, c.chip}];
        t.link = in.link;
        t.from = c.chip;
        t.to = in.peer;
        t.reservations.push_back({in.start_ns, in.end_ns, in.msg});
      }
    }
    g.programs.push_back(std::move(p));
  }
  for (auto& [key, t] : tables) g.links.push_back(std::move(t));
  return g;
}

}  // namespace

GlobalSchedule Expand(const CompactSchedule& s, int64_t tokens) {
  if (tokens < 0) throw InvalidInput("schedule: expand needs tokens >= 0");
  Selection sel;
  for (size_t x = 0; x < s.phases.size(); ++x) {
    const Phase& ph = s.phases[x];
    const int64_t passes = ph.kind == PhaseKind::kDecode && tokens > 0 ? tokens : ph.passes;
    sel.ranges.push_back({x, 0, passes * ph.slots});
  }
  GlobalSchedule g = ExpandAll(s, sel);
  g.tokens = tokens > 0 ? tokens : s.tokens;
  return g;
}

GlobalSchedule DecodePeriod(const CompactSchedule& s, int64_t iterations) {
  if (iterations < 0) throw InvalidInput("schedule: iterations must be >= 0");
  const Selection sel = DecodePeriodSelection(s);
  const Phase& ph = s.phases[sel.ranges.front().phase];
  GlobalSchedule g = ExpandAll(s, sel);
  g.prefill = false;
  g.prompt_len = g.prompt_bucket = g.prefill_chunks = g.prefill_chunk_tokens = 0;
  g.prefill_peak_bytes = g.time_to_first_token_ns = g.prefill_compute_path_ns = 0;
  g.tokens = 1;
  if (iterations > 0) {
    g.tokens = iterations;
    g.iterations = iterations;
    g.repeat_ns = ph.pass_ns();
    g.msg_stride = ph.messages * ph.slots;
    g.makespan_ns += (iterations - 1) * g.repeat_ns;
  }
  return g;
}

ChipProgram DecodePeriodProgram(const CompactSchedule& s, ChipId chip) {
  return ProgramOf(s, ChipOrThrow(s, chip), DecodePeriodSelection(s));
}

ChipProgram PrefillPassProgram(const CompactSchedule& s, ChipId chip, int64_t pass) {
  const CompactChip& c = ChipOrThrow(s, chip);
  return ProgramOf(s, c, PrefillPassSelection(s, pass));
}

IncomingBodies IncomingOf(const CompactSchedule& s, ChipId chip) {
  IncomingBodies out(s.phases.size());
  for (size_t x = 0; x < s.phases.size(); ++x) {
    std::map<std::pair<LinkId, ChipId>, LinkTable> tables;
    for (const CompactChip& c : s.chips) {
      for (const Instruction& in : c.bodies[x]) {
        if ((in.kind != InstrKind::kSend && in.kind != InstrKind::kForward) || in.peer != chip) {
          continue;
        }
        LinkTable& t = tables[{in.link, c.chip}];
        t.link = in.link;
        t.from = c.chip;
        t.to = chip;
        t.reservations.push_back({in.start_ns, in.end_ns, in.msg});
      }
    }
    for (auto& [key, t] : tables) out[x].push_back(std::move(t));
  }
  return out;
}

std::vector<LinkTable> DecodePeriodIncoming(const CompactSchedule& s,
                                            const IncomingBodies& incoming) {
  return ExpandIncoming(s, incoming, DecodePeriodSelection(s));
}

std::vector<LinkTable> PrefillPassIncoming(const CompactSchedule& s, const IncomingBodies& incoming,
                                           int64_t pass) {
  return ExpandIncoming(s, incoming, PrefillPassSelection(s, pass));
}

CompactSchedule AsCompact(const GlobalSchedule& g) {
  CompactSchedule s;
  s.model = g.model;
  s.topology = g.topology;
  s.tokens = g.tokens;
  s.sequences = g.sequences;
  s.batch = g.batch;
  s.stages = g.stages;
  s.token_latency_ns = g.token_latency_ns;
  s.cycle_ns = g.cycle_ns;
  s.period_ns = g.period_ns;
  s.makespan_ns = g.makespan_ns;
  s.prefill = g.prefill;
  s.prompt_len = g.prompt_len;
  s.prompt_bucket = g.prompt_bucket;
  s.prefill_chunks = g.prefill_chunks;
  s.prefill_chunk_tokens = g.prefill_chunk_tokens;
  s.prefill_peak_bytes = g.prefill_peak_bytes;
  s.time_to_first_token_ns = g.time_to_first_token_ns;
  s.prefill_compute_path_ns = g.prefill_compute_path_ns;
  s.compute_path_ns = g.compute_path_ns;
  s.slowest_stage_compute_ns = g.slowest_stage_compute_ns;
  Phase ph;
  ph.kind = PhaseKind::kDecode;
  ph.first_token = 0;
  ph.slots = 1;
  int64_t messages = 0, end = 1;
  for (const ChipProgram& p : g.programs) {
    for (const Instruction& in : p.instructions) {
      messages = std::max({messages, in.msg + 1, in.in_msg + 1});
      end = std::max(end, in.end_ns + 1);
    }
  }
  if (g.iterations > 0) {
    ph.passes = g.iterations;
    ph.slot_ns = g.repeat_ns;
    ph.messages = g.msg_stride;
  } else {
    // One copy: a stride past the last end folds nothing.
    ph.passes = 1;
    ph.slot_ns = std::max(end, g.makespan_ns + 1);
    ph.messages = messages;
  }
  s.phases.push_back(ph);
  for (const ChipProgram& p : g.programs) {
    CompactChip c;
    c.chip = p.chip;
    c.stage = p.stage;
    c.rank = p.rank;
    c.resident_bytes = p.resident_bytes;
    c.bodies.push_back(p.instructions);
    s.chips.push_back(std::move(c));
  }
  return s;
}

}  // namespace lockstep::schedule
