#include "lockstep/schedule/trace.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

namespace lockstep::schedule {
namespace {

constexpr int kChipsPid = 1;
constexpr int kLinksPid = 2;

double Us(int64_t ns) { return static_cast<double>(ns) / 1000.0; }

}  // namespace

std::string TraceJson(const GlobalSchedule& s, const SimResult* sim) {
  using nlohmann::json;
  std::map<std::pair<LinkId, ChipId>, int> link_track;
  json meta = json::array();
  meta.push_back(
      {{"ph", "M"}, {"pid", kChipsPid}, {"name", "process_name"}, {"args", {{"name", "chips"}}}});
  meta.push_back(
      {{"ph", "M"}, {"pid", kLinksPid}, {"name", "process_name"}, {"args", {{"name", "links"}}}});
  for (const ChipProgram& p : s.programs) {
    std::string name = "chip " + std::to_string(p.chip);
    if (p.stage >= 0)
      name += " (stage " + std::to_string(p.stage) + " rank " + std::to_string(p.rank) + ")";
    meta.push_back({{"ph", "M"},
                    {"pid", kChipsPid},
                    {"tid", p.chip},
                    {"name", "thread_name"},
                    {"args", {{"name", name}}}});
  }
  for (size_t k = 0; k < s.links.size(); ++k) {
    const LinkTable& t = s.links[k];
    link_track[{t.link, t.from}] = static_cast<int>(k);
    meta.push_back({{"ph", "M"},
                    {"pid", kLinksPid},
                    {"tid", static_cast<int>(k)},
                    {"name", "thread_name"},
                    {"args",
                     {{"name", "link " + std::to_string(t.link) + ": " + std::to_string(t.from) +
                                   " -> " + std::to_string(t.to)}}}});
  }
  // (time ns, sequence) -> event, so equal times keep a stable order.
  std::vector<std::pair<std::pair<int64_t, size_t>, json>> events;
  auto add = [&](int64_t ns, json e) {
    e["ts"] = Us(ns);
    events.push_back({{ns, events.size()}, std::move(e)});
  };
  for (size_t p = 0; p < s.programs.size(); ++p) {
    const ChipProgram& prog = s.programs[p];
    for (size_t i = 0; i < prog.instructions.size(); ++i) {
      const Instruction& in = prog.instructions[i];
      int64_t start = in.start_ns, end = in.end_ns;
      if (sim && !sim->start_ns.empty()) {
        start = sim->start_ns[p][i];
        end = sim->end_ns[p][i];
        if (end < 0) continue;
      }
      json args = {{"token", in.token}, {"sequence", in.sequence}, {"stage", in.stage}};
      if (in.layer >= 0) args["layer"] = in.layer;
      const std::string name(in.tag == Tag::kOp ? partition::OpKindName(in.op) : TagName(in.tag));
      switch (in.kind) {
        case InstrKind::kCompute:
        case InstrKind::kReduce:
          add(start, {{"ph", "X"},
                      {"pid", kChipsPid},
                      {"tid", prog.chip},
                      {"name", name},
                      {"cat", InstrKindName(in.kind)},
                      {"dur", Us(end - start)},
                      {"args", args}});
          break;
        case InstrKind::kRecv:
          args["from"] = in.in_peer;
          args["bytes"] = in.bytes;
          add(start, {{"ph", "X"},
                      {"pid", kChipsPid},
                      {"tid", prog.chip},
                      {"name", name + " recv"},
                      {"cat", "recv"},
                      {"dur", 0},
                      {"args", args}});
          add(start, {{"ph", "f"},
                      {"bp", "e"},
                      {"pid", kChipsPid},
                      {"tid", prog.chip},
                      {"name", "hop"},
                      {"cat", "transfer"},
                      {"id", in.in_msg}});
          break;
        case InstrKind::kSend:
        case InstrKind::kForward: {
          if (in.kind == InstrKind::kForward) {
            add(start, {{"ph", "f"},
                        {"bp", "e"},
                        {"pid", kChipsPid},
                        {"tid", prog.chip},
                        {"name", "hop"},
                        {"cat", "transfer"},
                        {"id", in.in_msg}});
            add(start, {{"ph", "X"},
                        {"pid", kChipsPid},
                        {"tid", prog.chip},
                        {"name", name + " forward"},
                        {"cat", "forward"},
                        {"dur", 0},
                        {"args", args}});
          }
          args["to"] = in.peer;
          args["bytes"] = in.bytes;
          auto it = link_track.find({in.link, prog.chip});
          const int tid = it == link_track.end() ? -1 : it->second;
          add(start, {{"ph", "X"},
                      {"pid", kLinksPid},
                      {"tid", tid},
                      {"name", name},
                      {"cat", InstrKindName(in.kind)},
                      {"dur", Us(end - start)},
                      {"args", args}});
          add(start, {{"ph", "s"},
                      {"pid", kLinksPid},
                      {"tid", tid},
                      {"name", "hop"},
                      {"cat", "transfer"},
                      {"id", in.msg}});
          break;
        }
      }
    }
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  json all = std::move(meta);
  for (auto& [key, e] : events) all.push_back(std::move(e));
  json out = {{"displayTimeUnit", "ns"}, {"traceEvents", std::move(all)}};
  return out.dump() + "\n";
}

}  // namespace lockstep::schedule
