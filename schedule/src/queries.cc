#include "lockstep/schedule/queries.h"

#include <algorithm>
#include <set>

#include "lockstep/common/error.h"

namespace lockstep::schedule {

int32_t ProgramSlots(const ChipProgram& program) {
  int32_t n = 0;
  for (const Instruction& in : program.instructions) n = std::max(n, in.sequence + 1);
  return n;
}

std::vector<topology::LinkId> ProgramLinks(const ChipProgram& program) {
  std::set<topology::LinkId> links;
  for (const Instruction& in : program.instructions) {
    if (in.link >= 0) links.insert(in.link);
    if (in.in_link >= 0) links.insert(in.in_link);
  }
  return {links.begin(), links.end()};
}

int64_t MaxMessagesPerLinkDirection(const GlobalSchedule& schedule) {
  size_t n = 0;
  for (const LinkTable& t : schedule.links) n = std::max(n, t.reservations.size());
  return static_cast<int64_t>(n);
}

std::vector<LinkTable> IncomingTables(const GlobalSchedule& schedule, topology::ChipId chip) {
  std::vector<LinkTable> out;
  for (const LinkTable& t : schedule.links) {
    if (t.to == chip) out.push_back(t);
  }
  return out;
}

GlobalSchedule PrefillPass(const GlobalSchedule& compiled) {
  GlobalSchedule out = compiled;
  std::set<int64_t> kept_msgs;
  for (ChipProgram& p : out.programs) {
    std::vector<int32_t> where(p.instructions.size(), -1);
    std::vector<Instruction> kept;
    for (size_t i = 0; i < p.instructions.size(); ++i) {
      const Instruction& in = p.instructions[i];
      if (in.token >= 0) continue;
      where[i] = static_cast<int32_t>(kept.size());
      Instruction copy = in;
      for (int32_t& d : copy.deps) {
        if (where[static_cast<size_t>(d)] < 0) {
          throw InvalidInput("prefill pass: " + DescribeStep(in) +
                             " depends on a decode instruction");
        }
        d = where[static_cast<size_t>(d)];
      }
      if (copy.msg >= 0) kept_msgs.insert(copy.msg);
      kept.push_back(std::move(copy));
    }
    p.instructions = std::move(kept);
  }
  for (LinkTable& t : out.links) {
    std::erase_if(t.reservations,
                  [&](const Reservation& r) { return kept_msgs.count(r.msg) == 0; });
  }
  std::erase_if(out.links, [](const LinkTable& t) { return t.reservations.empty(); });
  out.tokens = 0;
  out.makespan_ns = 0;
  for (const ChipProgram& p : out.programs) {
    for (const Instruction& in : p.instructions)
      out.makespan_ns = std::max(out.makespan_ns, in.end_ns);
  }
  return out;
}

}  // namespace lockstep::schedule
