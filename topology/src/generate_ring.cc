// Ring and 2-D torus: comparison shapes with nearest-neighbour links only.
#include <string>

#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"

namespace lockstep::topology {

Topology GenerateRing(const ChipSpec& chip, int chips) {
  if (chips < 2) throw InvalidInput("ring: --chips must be >= 2, got " + std::to_string(chips));
  if (chip.ports < 2) throw InvalidInput("ring: " + chip.name + " needs at least 2 ports");
  Topology topo("ring" + std::to_string(chips));
  int spec = topo.AddSpec(chip);
  for (int i = 0; i < chips; ++i) topo.AddChip(i, 0, false, spec);
  const int links = chips == 2 ? 1 : chips;  // two chips: one link, not two parallel ones
  for (int i = 0; i < links; ++i) topo.AddLink(PortRef{i, 0}, PortRef{(i + 1) % chips, 1});
  return topo;
}

Topology GenerateTorus2d(const ChipSpec& chip, int width, int height) {
  if (width < 1 || height < 1 || width * height < 2) {
    throw InvalidInput("torus2d: --width and --height must be >= 1 with at least 2 chips, got " +
                       std::to_string(width) + "x" + std::to_string(height));
  }
  if (chip.ports < 4) throw InvalidInput("torus2d: " + chip.name + " needs at least 4 ports");
  Topology topo("torus" + std::to_string(width) + "x" + std::to_string(height));
  int spec = topo.AddSpec(chip);
  auto id = [&](int x, int y) { return static_cast<ChipId>(y * width + x); };
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) topo.AddChip(id(x, y), 0, false, spec);
  }
  // A dimension of size 1 has no links; of size 2 one link per pair (its wrap-around would
  // duplicate it); otherwise a ring.
  auto wire_dimension = [&](int size, int plus_port, auto chip_at) {
    const int links = size == 1 ? 0 : (size == 2 ? 1 : size);
    for (int other = 0; other < (plus_port == 0 ? height : width); ++other) {
      for (int i = 0; i < links; ++i) {
        topo.AddLink(PortRef{chip_at(i, other), plus_port},
                     PortRef{chip_at((i + 1) % size, other), plus_port + 1});
      }
    }
  };
  wire_dimension(width, 0, [&](int x, int y) { return id(x, y); });
  wire_dimension(height, 2, [&](int y, int x) { return id(x, y); });
  return topo;
}

}  // namespace lockstep::topology
