#include "lockstep/control/settings.h"

#include <algorithm>

namespace lockstep::control {

transport::TransportOptions TransportOptionsFor(const TransportSettings& s) {
  transport::TransportOptions t;
  t.backend = s.backend;
  t.queue_capacity = s.queue_capacity;
  t.max_payload_bytes = s.max_payload_bytes;
  t.ipc_dir = s.ipc_dir;
  t.tcp_base_port = s.tcp_base_port;
  for (const auto& [chip, host] : s.tcp_hosts) t.tcp_hosts[chip] = host;
  t.checksums = s.checksums;
  return t;
}

std::vector<transport::LinkSpec> LinkSpecs(const topology::Topology& topo,
                                           const std::vector<topology::LinkId>& links) {
  std::vector<transport::LinkSpec> out;
  for (topology::LinkId id : links) {
    const topology::Link& l = topo.link(id);
    transport::LinkSpec s;
    s.a = {static_cast<uint32_t>(l.a.chip), static_cast<uint32_t>(l.a.port)};
    s.b = {static_cast<uint32_t>(l.b.chip), static_cast<uint32_t>(l.b.port)};
    s.latency_ns = l.latency_ns;
    s.bytes_per_second = l.bandwidth_bytes_per_s;
    out.push_back(s);
  }
  return out;
}

HostInfo SummarizeHost(const topology::HostSummary& host) {
  HostInfo h{host.source, host.packages, host.numa_nodes, host.cores, host.pus, {}};
  // Cores in logical order across domains: domain order, then core index (both ascending).
  std::vector<std::pair<int, int>> cores;
  for (const topology::NumaDomain& d : host.numa) {
    for (const topology::HostCore& c : d.cores) {
      if (!c.pus.empty()) cores.emplace_back(c.index, c.pus.front());
    }
  }
  std::sort(cores.begin(), cores.end());
  for (const auto& [index, pu] : cores) h.core_pus.push_back(pu);
  return h;
}

}  // namespace lockstep::control
