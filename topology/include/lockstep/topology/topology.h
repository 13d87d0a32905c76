// Topology — the chips of a system and the physical links between their ports.
//
// Chips have dense ids 0..N-1 (the id is the index), belong to a node and a rack, and may be
// spares (kept free by the planner, used by failover). A link joins chip:port to chip:port and
// is full duplex: `bandwidth_bytes_per_s` in each direction, `latency_ns` per traversal. A port
// carries at most one link and must exist on its chip's ChipSpec; AddLink enforces both, so a
// Topology object is always structurally valid. Chips and links may be marked down; routing
// avoids them. Links are stored in insertion order and every accessor iterates in id order, so
// everything derived from a Topology is deterministic.
//
// Not thread-safe for mutation; concurrent const use is safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lockstep/topology/chip_spec.h"

namespace lockstep::topology {

using ChipId = int32_t;
using LinkId = int32_t;

struct PortRef {
  ChipId chip = 0;
  int port = 0;
  friend bool operator==(const PortRef&, const PortRef&) = default;
};

struct Chip {
  ChipId id = 0;
  int node = 0;  // global node index (unique across racks)
  int rack = 0;  // rack index
  bool spare = false;
  bool down = false;
  int spec = 0;  // index into Topology::specs()
};

struct Link {
  LinkId id = 0;
  PortRef a;
  PortRef b;
  int64_t bandwidth_bytes_per_s = 0;  // per direction
  int64_t latency_ns = 0;
  bool down = false;

  // The far end seen from `chip` (which must be a or b).
  PortRef Peer(ChipId chip) const { return a.chip == chip ? b : a; }
};

// One usable neighbour of a chip: which of its ports, over which link, to which chip.
struct Adjacent {
  int port = 0;
  LinkId link = 0;
  ChipId peer = 0;
};

class Topology {
 public:
  explicit Topology(std::string name = "topology") : name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  // Chip types. Returns the index to pass to AddChip. A spec with the same name replaces
  // nothing: names must be unique (throws Error otherwise).
  int AddSpec(const ChipSpec& spec);
  // Index of the spec with this name, or nullopt.
  std::optional<int> FindSpec(const std::string& name) const;

  // Appends a chip with the next id. `spec` must be a valid spec index.
  ChipId AddChip(int node, int rack, bool spare, int spec = 0);

  // Joins two ports. Throws Error (kInvalidInput) naming the chip and port when a chip does not
  // exist, a port is beyond the chip's count or already used, the ends are the same chip:port,
  // or bandwidth <= 0 / latency < 0.
  LinkId AddLink(PortRef a, PortRef b, int64_t bandwidth_bytes_per_s, int64_t latency_ns);
  // Same, with the bandwidth and latency of chip a's spec.
  LinkId AddLink(PortRef a, PortRef b);

  void SetChipDown(ChipId chip, bool down = true);
  void SetLinkDown(LinkId link, bool down = true);
  // Failover: a spare that takes a failed chip's place is no longer a spare.
  void SetChipSpare(ChipId chip, bool spare);

  int chip_count() const { return static_cast<int>(chips_.size()); }
  int link_count() const { return static_cast<int>(links_.size()); }
  const std::vector<Chip>& chips() const { return chips_; }
  const std::vector<Link>& links() const { return links_; }
  const std::vector<ChipSpec>& specs() const { return specs_; }
  const Chip& chip(ChipId id) const { return chips_.at(id); }
  const Link& link(LinkId id) const { return links_.at(id); }
  const ChipSpec& spec_of(ChipId id) const { return specs_.at(chips_.at(id).spec); }
  bool has_chip(ChipId id) const { return id >= 0 && id < chip_count(); }

  // The link on chip:port, if any.
  std::optional<LinkId> LinkAt(PortRef port) const;
  // Number of ports of this chip that carry a link.
  int PortsUsed(ChipId chip) const;
  // All neighbours over links that are up and lead to chips that are up, ordered by port.
  // Empty when the chip itself is down.
  std::vector<Adjacent> Neighbors(ChipId chip) const;

  int spare_count() const;
  int node_count() const;  // 1 + the largest node index (0 for no chips)
  int rack_count() const;  // 1 + the largest rack index

 private:
  std::string name_;
  std::vector<ChipSpec> specs_;
  std::vector<Chip> chips_;
  std::vector<Link> links_;
  // port_links_[chip][port] = link id or -1.
  std::vector<std::vector<LinkId>> port_links_;
};

// "chip 3 port 7" style text for messages; "3:7" for files.
std::string DescribePort(PortRef p);
std::string FormatPortRef(PortRef p);

}  // namespace lockstep::topology
