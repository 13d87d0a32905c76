#include "lockstep/transport/transport.h"

#include "backends.h"
#include "lockstep/common/error.h"

namespace lockstep::transport {

PortRef LocalEnd(const LinkSpec& link, uint32_t chip) {
  if (link.a.chip == link.b.chip) {
    throw InvalidInput(LinkName(link) + ": both ends are on chip " + std::to_string(chip) +
                       " (a link joins two different chips)");
  }
  if (link.a.chip == chip) return link.a;
  if (link.b.chip == chip) return link.b;
  throw InvalidInput(LinkName(link) + ": chip " + std::to_string(chip) +
                     " is at neither end of the link");
}

std::string PeerTimeoutMessage(const LinkSpec& link, PortRef remote, Millis timeout) {
  return LinkName(link) + ": peer chip " + std::to_string(remote.chip) +
         " did not connect within " + std::to_string(timeout.count()) + " ms";
}

std::unique_ptr<Endpoint> Transport::Open(const LinkSpec& link, PortRef local,
                                          Millis connect_timeout) {
  if (local != link.a && local != link.b) {
    throw InvalidInput(LinkName(link) + ": " + ToString(local) + " is not an end of the link");
  }
  auto endpoints = OpenChip(local.chip, {link}, connect_timeout);
  return std::move(endpoints.front());
}

std::vector<std::string> TransportBackends() { return {"sim", "inproc", "ipc", "tcp"}; }

std::unique_ptr<Transport> CreateTransport(const TransportOptions& options) {
  if (options.queue_capacity < 1) {
    throw InvalidInput("transport options: queue_capacity " +
                       std::to_string(options.queue_capacity) + " (valid: >= 1)");
  }
  if (options.backend == "sim") return CreateSimTransport(options);
  if (options.backend == "inproc" || options.backend == "ipc" || options.backend == "tcp") {
    return CreateZmqTransport(options);
  }
  throw InvalidInput("transport backend '" + options.backend +
                     "' is unknown (valid: sim, inproc, ipc, tcp)");
}

}  // namespace lockstep::transport
