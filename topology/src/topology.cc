#include "lockstep/topology/topology.h"

#include <algorithm>

#include "lockstep/common/error.h"

namespace lockstep::topology {

std::string DescribePort(PortRef p) {
  return "chip " + std::to_string(p.chip) + " port " + std::to_string(p.port);
}

std::string FormatPortRef(PortRef p) {
  return std::to_string(p.chip) + ":" + std::to_string(p.port);
}

int Topology::AddSpec(const ChipSpec& spec) {
  if (FindSpec(spec.name)) throw InvalidInput("chip spec '" + spec.name + "' is defined twice");
  if (std::string bad = CheckChipSpec(spec); !bad.empty()) {
    throw InvalidInput("chip spec '" + spec.name + "': " + bad);
  }
  specs_.push_back(spec);
  return static_cast<int>(specs_.size()) - 1;
}

std::optional<int> Topology::FindSpec(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].name == name) return static_cast<int>(i);
  }
  return std::nullopt;
}

ChipId Topology::AddChip(int node, int rack, bool spare, int spec) {
  if (spec < 0 || spec >= static_cast<int>(specs_.size())) {
    throw InvalidInput("chip " + std::to_string(chips_.size()) + ": unknown chip spec index " +
                       std::to_string(spec));
  }
  if (node < 0 || rack < 0) {
    throw InvalidInput("chip " + std::to_string(chips_.size()) + ": node and rack must be >= 0");
  }
  Chip c;
  c.id = static_cast<ChipId>(chips_.size());
  c.node = node;
  c.rack = rack;
  c.spare = spare;
  c.spec = spec;
  chips_.push_back(c);
  port_links_.emplace_back(specs_[spec].ports, -1);
  return c.id;
}

LinkId Topology::AddLink(PortRef a, PortRef b) {
  if (!has_chip(a.chip)) throw InvalidInput("link " + FormatPortRef(a) + ": unknown chip");
  const ChipSpec& s = spec_of(a.chip);
  return AddLink(a, b, s.link_bandwidth_bytes_per_s, s.link_latency_ns);
}

LinkId Topology::AddLink(PortRef a, PortRef b, int64_t bandwidth_bytes_per_s, int64_t latency_ns) {
  const std::string what = "link " + FormatPortRef(a) + " <-> " + FormatPortRef(b);
  for (PortRef p : {a, b}) {
    if (!has_chip(p.chip)) {
      throw InvalidInput(what + ": unknown chip " + std::to_string(p.chip) + " (chips are 0.." +
                         std::to_string(chip_count() - 1) + ")");
    }
    const int ports = spec_of(p.chip).ports;
    if (p.port < 0 || p.port >= ports) {
      throw InvalidInput(what + ": " + DescribePort(p) + " is out of range (" +
                         spec_of(p.chip).name + " has ports 0.." + std::to_string(ports - 1) + ")");
    }
    if (LinkId used = port_links_[p.chip][p.port]; used >= 0) {
      throw InvalidInput(what + ": " + DescribePort(p) + " is already used by link " +
                         FormatPortRef(links_[used].a) + " <-> " + FormatPortRef(links_[used].b));
    }
  }
  if (a.chip == b.chip) throw InvalidInput(what + ": a link must join two different chips");
  if (bandwidth_bytes_per_s <= 0) {
    throw InvalidInput(what + ": bandwidth must be > 0 bytes/s, got " +
                       std::to_string(bandwidth_bytes_per_s));
  }
  if (latency_ns < 0) {
    throw InvalidInput(what + ": latency must be >= 0 ns, got " + std::to_string(latency_ns));
  }
  Link l;
  l.id = static_cast<LinkId>(links_.size());
  l.a = a;
  l.b = b;
  l.bandwidth_bytes_per_s = bandwidth_bytes_per_s;
  l.latency_ns = latency_ns;
  links_.push_back(l);
  port_links_[a.chip][a.port] = l.id;
  port_links_[b.chip][b.port] = l.id;
  return l.id;
}

void Topology::SetChipDown(ChipId chip, bool down) { chips_.at(chip).down = down; }
void Topology::SetLinkDown(LinkId link, bool down) { links_.at(link).down = down; }
void Topology::SetChipSpare(ChipId chip, bool spare) { chips_.at(chip).spare = spare; }

std::optional<LinkId> Topology::LinkAt(PortRef port) const {
  if (!has_chip(port.chip)) return std::nullopt;
  const auto& ports = port_links_[port.chip];
  if (port.port < 0 || port.port >= static_cast<int>(ports.size())) return std::nullopt;
  if (ports[port.port] < 0) return std::nullopt;
  return ports[port.port];
}

int Topology::PortsUsed(ChipId chip) const {
  const auto& ports = port_links_.at(chip);
  return static_cast<int>(
      std::count_if(ports.begin(), ports.end(), [](LinkId l) { return l >= 0; }));
}

std::vector<Adjacent> Topology::Neighbors(ChipId chip) const {
  std::vector<Adjacent> out;
  if (chips_.at(chip).down) return out;
  const auto& ports = port_links_[chip];
  for (int p = 0; p < static_cast<int>(ports.size()); ++p) {
    if (ports[p] < 0) continue;
    const Link& l = links_[ports[p]];
    if (l.down) continue;
    ChipId peer = l.Peer(chip).chip;
    if (chips_[peer].down) continue;
    out.push_back(Adjacent{p, l.id, peer});
  }
  return out;
}

int Topology::spare_count() const {
  return static_cast<int>(
      std::count_if(chips_.begin(), chips_.end(), [](const Chip& c) { return c.spare; }));
}

int Topology::node_count() const {
  int n = 0;
  for (const Chip& c : chips_) n = std::max(n, c.node + 1);
  return n;
}

int Topology::rack_count() const {
  int n = 0;
  for (const Chip& c : chips_) n = std::max(n, c.rack + 1);
  return n;
}

}  // namespace lockstep::topology
