#include "lockstep/schedule/queries.h"

#include <algorithm>
#include <set>

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

}  // namespace lockstep::schedule
