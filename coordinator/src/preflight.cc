#include "lockstep/coordinator/preflight.h"

#include <algorithm>
#include <map>

namespace lockstep::coordinator {
namespace {

std::string Who(const WorkerInfo& w) {
  return "worker pid " + std::to_string(w.pid) + " on host '" + w.hostname + "'";
}

bool SameEnds(const transport::LinkSpec& a, const transport::LinkSpec& b) {
  return (a.a == b.a && a.b == b.b) || (a.a == b.b && a.b == b.a);
}

}  // namespace

std::vector<std::string> CheckWorkerHosts(const std::vector<WorkerInfo>& workers,
                                          const HostMap& map, const topology::HostsFile& hosts,
                                          const std::string& this_hostname) {
  std::vector<std::string> problems;
  std::map<int32_t, std::vector<const WorkerInfo*>> by_chip;
  for (const WorkerInfo& w : workers) {
    if (w.chip < 0) {
      problems.push_back(Who(w) + " registered without asking for a chip (deploy starts " +
                         "lockstep-worker --chip C for each chip of the mapping)");
      continue;
    }
    const ChipOnHost* placed = map.Find(w.chip);
    if (placed == nullptr) {
      problems.push_back(Who(w) + " asked for chip " + std::to_string(w.chip) +
                         ", which the mapping does not start");
      continue;
    }
    by_chip[w.chip].push_back(&w);
    const topology::HostEntry& h = hosts.hosts.at(static_cast<size_t>(placed->host));
    const bool match =
        w.hostname == h.reported_name() || w.hostname == h.address ||
        (topology::IsLocalAddress(h.address, this_hostname) && w.hostname == this_hostname);
    if (!match) {
      problems.push_back("chip " + std::to_string(w.chip) + ": worker pid " +
                         std::to_string(w.pid) + " registered from host '" + w.hostname +
                         "', but the mapping puts chip " + std::to_string(w.chip) + " on host " +
                         h.name + " (" + h.address + ", reporting hostname '" + h.reported_name() +
                         "')");
    }
  }
  for (const auto& [chip, list] : by_chip) {
    if (list.size() < 2) continue;
    std::string who;
    for (const WorkerInfo* w : list) who += (who.empty() ? "" : ", ") + Who(*w);
    problems.push_back("chip " + std::to_string(chip) + " has " + std::to_string(list.size()) +
                       " workers: " + who);
  }
  for (const ChipOnHost& c : map.chips) {
    if (!by_chip.count(c.chip)) {
      problems.push_back("chip " + std::to_string(c.chip) + ": no worker registered (host " +
                         hosts.hosts.at(static_cast<size_t>(c.host)).name + ")");
    }
  }
  std::stable_sort(problems.begin(), problems.end());
  return problems;
}

std::vector<std::string> CheckRoutes(const Deployment& d, const topology::Topology& topo) {
  std::vector<std::string> problems;
  std::map<uint32_t, const ChipDeployment*> deployed;
  for (const ChipDeployment& c : d.chips) deployed[c.chip] = &c;
  for (const ChipDeployment& c : d.chips) {
    for (const transport::LinkSpec& l : c.links) {
      const transport::PortRef self = l.a.chip == c.chip ? l.a : l.b;
      const transport::PortRef peer = l.a.chip == c.chip ? l.b : l.a;
      const std::string at =
          "chip " + std::to_string(self.chip) + " port " + std::to_string(self.port) + ": ";
      if (self.chip != c.chip) {
        problems.push_back("chip " + std::to_string(c.chip) + ": its link table holds " +
                           transport::LinkName(l) + ", which does not touch it");
        continue;
      }
      const std::optional<topology::LinkId> id =
          topo.LinkAt({static_cast<topology::ChipId>(self.chip), static_cast<int>(self.port)});
      if (!id) {
        problems.push_back(at + "no link in topology '" + topo.name() + "'");
        continue;
      }
      const topology::Link& t = topo.link(*id);
      const topology::PortRef far = t.Peer(static_cast<topology::ChipId>(self.chip));
      if (far.chip != static_cast<topology::ChipId>(peer.chip) ||
          far.port != static_cast<int>(peer.port)) {
        problems.push_back(at + "the schedule expects chip " + std::to_string(peer.chip) +
                           " port " + std::to_string(peer.port) + ", the topology links chip " +
                           std::to_string(far.chip) + " port " + std::to_string(far.port));
        continue;
      }
      if (t.down)
        problems.push_back(at + "its link to chip " + std::to_string(peer.chip) +
                           " is down in topology '" + topo.name() + "'");
      auto other = deployed.find(peer.chip);
      if (other == deployed.end()) {
        problems.push_back(at + "leads to chip " + std::to_string(peer.chip) +
                           ", which is not deployed (a routed hop without its forwarding chip)");
        continue;
      }
      const std::vector<transport::LinkSpec>& theirs = other->second->links;
      if (std::none_of(theirs.begin(), theirs.end(),
                       [&](const transport::LinkSpec& x) { return SameEnds(x, l); })) {
        problems.push_back(at + "chip " + std::to_string(peer.chip) +
                           " does not use this link (its program never opens port " +
                           std::to_string(peer.port) + ")");
      }
    }
  }
  return problems;
}

}  // namespace lockstep::coordinator
