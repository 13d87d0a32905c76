#include "group_mesh.h"

namespace lockstep::topology::internal {

int LinksPerPair(int groups, int slots) { return groups <= 1 ? 0 : slots / (groups - 1); }

void WireGroupMesh(Topology& topo, int groups, int links_per_pair,
                   const std::function<PortRef(int group, int slot)>& slot_port) {
  const int partners = groups - 1;
  // Index of y among x's partners (all groups but x, ascending).
  auto partner_index = [](int x, int y) { return y < x ? y : y - 1; };
  for (int x = 0; x < groups; ++x) {
    for (int y = x + 1; y < groups; ++y) {
      for (int l = 0; l < links_per_pair; ++l) {
        PortRef a = slot_port(x, l * partners + partner_index(x, y));
        PortRef b = slot_port(y, l * partners + partner_index(y, x));
        topo.AddLink(a, b);
      }
    }
  }
}

}  // namespace lockstep::topology::internal
