#include "lockstep/schedule/link_load.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace lockstep::schedule {
namespace {

// Per (link, from, to), in that order, so the result never depends on program order.
using Loads = std::map<std::tuple<LinkId, ChipId, ChipId>, LinkLoad>;

void Count(Loads& loads, LinkId link, ChipId from, ChipId to, int64_t bytes) {
  LinkLoad& l = loads[{link, from, to}];
  l.link = link;
  l.from = from;
  l.to = to;
  ++l.messages;
  l.max_message_bytes = std::max(l.max_message_bytes, bytes);
  l.bytes += bytes;
}

bool Sends(const Instruction& in) {
  return (in.kind == InstrKind::kSend || in.kind == InstrKind::kForward) && in.link >= 0;
}

bool Receives(const Instruction& in) {
  return (in.kind == InstrKind::kRecv || in.kind == InstrKind::kForward) && in.in_link >= 0;
}

std::vector<LinkLoad> Flatten(const Loads& loads) {
  std::vector<LinkLoad> out;
  out.reserve(loads.size());
  for (const auto& [key, load] : loads) out.push_back(load);
  return out;
}

}  // namespace

std::vector<LinkLoad> LinkLoads(const GlobalSchedule& schedule) {
  Loads loads;
  for (const ChipProgram& program : schedule.programs) {
    for (const Instruction& in : program.instructions) {
      if (Sends(in)) Count(loads, in.link, program.chip, in.peer, in.bytes);
    }
  }
  return Flatten(loads);
}

std::vector<LinkLoad> ProgramLinkLoads(const ChipProgram& program) {
  Loads loads;
  for (const Instruction& in : program.instructions) {
    if (Sends(in)) Count(loads, in.link, program.chip, in.peer, in.bytes);
    if (Receives(in)) Count(loads, in.in_link, in.in_peer, program.chip, in.bytes);
  }
  return Flatten(loads);
}

}  // namespace lockstep::schedule
