#include "stall_report.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

namespace lockstep::coordinator {
namespace {

std::string Plural(const std::vector<int32_t>& chips) {
  return (chips.size() == 1 ? "chip " : "chips ") + ChipRanges(chips);
}

nlohmann::json EntryJson(const control::FlightEntry& e) {
  return {{"step", e.step},
          {"op", e.op},
          {"kind", std::string(schedule::InstrKindName(e.kind))},
          {"link", e.link},
          {"port", e.port},
          {"peer", e.peer},
          {"bytes", e.bytes},
          {"start_ns", e.start_ns},
          {"end_ns", e.end_ns}};
}

}  // namespace

std::string ChipRanges(const std::vector<int32_t>& chips) {
  std::string out;
  for (size_t i = 0; i < chips.size();) {
    size_t j = i;
    while (j + 1 < chips.size() && chips[j + 1] == chips[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(chips[i]);
    if (j > i) out += "-" + std::to_string(chips[j]);
    i = j + 1;
  }
  return out;
}

std::string DescribeEntry(const control::FlightEntry& e) {
  std::string what(schedule::InstrKindName(e.kind));
  if (e.link < 0) return what;
  what += " on link " + std::to_string(e.link);
  if (e.port >= 0) what += " (port " + std::to_string(e.port) + ")";
  what +=
      (e.kind == schedule::InstrKind::kSend ? " to chip " : " from chip ") + std::to_string(e.peer);
  return what;
}

StallReport AnalyzeStall(int64_t step, std::vector<ChipStall> chips) {
  std::sort(chips.begin(), chips.end(),
            [](const ChipStall& a, const ChipStall& b) { return a.chip < b.chip; });
  StallReport r;
  std::vector<std::string> parts;
  for (const ChipStall& c : chips) {
    if (c.finished) {
      r.finished.push_back(c.chip);
      continue;
    }
    r.behind.push_back(c.chip);
    const control::ChipProgress& p = c.progress;
    const std::string who = "chip " + std::to_string(c.chip);
    if (!c.heard) {
      parts.push_back(who + " does not answer (last completed step " +
                      std::to_string(p.last_completed_step) + ")");
    } else if (!p.running || p.step != step) {
      parts.push_back(who + " has not started step " + std::to_string(step) +
                      " (last completed step " + std::to_string(p.last_completed_step) + ")");
    } else if (p.current.op < 0) {
      parts.push_back(who + " runs step " + std::to_string(step) + " between instructions");
    } else {
      const bool waits = p.current.link >= 0;
      parts.push_back(
          who + (waits ? " waits" : " is") + " at step " + std::to_string(step) + " op " +
          std::to_string(p.current.op) + ": " + DescribeEntry(p.current) + " for " +
          std::to_string((p.since_step_start_ns - p.current.start_ns) / 1000000) + " ms");
    }
  }
  // The chip most waiters wait on is the likeliest culprit (its links or its process).
  std::map<int32_t, int> waited_on;
  for (const ChipStall& c : chips) {
    if (!c.finished && c.heard && c.progress.running && c.progress.step == step &&
        c.progress.current.link >= 0) {
      ++waited_on[c.progress.current.peer];
    }
  }
  int most = 0;
  int32_t suspect = -1;
  bool tie = false;
  for (const auto& [chip, n] : waited_on) {
    if (n > most) {
      most = n;
      suspect = chip;
      tie = false;
    } else if (n == most) {
      tie = true;
    }
  }
  r.text = "step " + std::to_string(step) + " stalled: ";
  for (size_t i = 0; i < parts.size(); ++i) r.text += (i ? "; " : "") + parts[i];
  if (parts.empty()) r.text += "no chip is behind";
  if (!r.finished.empty()) {
    r.text += "; " + Plural(r.finished) + " finished step " + std::to_string(step);
  }
  if (most >= 2 && !tie) {
    r.suspect = suspect;
    r.text += "; " + std::to_string(most) + " chips wait on chip " + std::to_string(suspect) +
              " (check its links)";
  }
  return r;
}

std::string StallJson(int64_t step, const StallReport& report,
                      const std::vector<ChipStall>& chips) {
  nlohmann::json out = {{"step", step}, {"report", report.text}, {"suspect", report.suspect}};
  std::vector<const ChipStall*> sorted;
  for (const ChipStall& c : chips) sorted.push_back(&c);
  std::sort(sorted.begin(), sorted.end(),
            [](const ChipStall* a, const ChipStall* b) { return a->chip < b->chip; });
  nlohmann::json list = nlohmann::json::array();
  for (const ChipStall* c : sorted) {
    nlohmann::json entries = nlohmann::json::array();
    for (const control::FlightEntry& e : c->entries) entries.push_back(EntryJson(e));
    const control::ChipProgress& p = c->progress;
    list.push_back({{"chip", c->chip},
                    {"finished", c->finished},
                    {"answered", c->heard},
                    {"progress",
                     {{"step", p.step},
                      {"running", p.running},
                      {"last_completed_step", p.last_completed_step},
                      {"since_step_start_ns", p.since_step_start_ns},
                      {"current", EntryJson(p.current)}}},
                    {"entries", entries}});
  }
  out["chips"] = list;
  return out.dump(2) + "\n";
}

}  // namespace lockstep::coordinator
