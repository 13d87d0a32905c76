#include "lockstep/transport/transport.h"

#include <algorithm>
#include <utility>

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

void CheckLinkSpec(const LinkSpec& link, const TransportOptions& options) {
  for (const auto& [from, bound] :
       {std::pair{link.a, link.a_to_b}, std::pair{link.b, link.b_to_a}}) {
    if (!bound.known()) continue;
    const PortRef to = from == link.a ? link.b : link.a;
    const std::string what = LinkName(link) + ": bound " + ToString(from) + " -> " + ToString(to);
    if (bound.max_message_bytes >
        static_cast<int64_t>(std::min<uint64_t>(options.max_payload_bytes, INT64_MAX))) {
      throw InvalidInput(what + ": largest message of " + std::to_string(bound.max_message_bytes) +
                         " bytes exceeds max_payload_bytes " +
                         std::to_string(options.max_payload_bytes));
    }
    if (bound.messages < 0) {
      throw InvalidInput(what + ": " + std::to_string(bound.messages) + " messages (valid: >= 0)");
    }
  }
}

std::string_view LinkChecksumsName(LinkChecksums policy) {
  switch (policy) {
    case LinkChecksums::kAuto:
      return "auto";
    case LinkChecksums::kOn:
      return "on";
    case LinkChecksums::kOff:
      return "off";
  }
  return "auto";
}

LinkChecksums ParseLinkChecksums(std::string_view name) {
  for (LinkChecksums p : {LinkChecksums::kAuto, LinkChecksums::kOn, LinkChecksums::kOff}) {
    if (name == LinkChecksumsName(p)) return p;
  }
  throw InvalidInput("link checksums '" + std::string(name) + "' (valid: auto, on, off)");
}

bool ChecksumsPayloads(const TransportOptions& options) {
  switch (options.checksums) {
    case LinkChecksums::kOn:
      return true;
    case LinkChecksums::kOff:
      return false;
    case LinkChecksums::kAuto:
      break;
  }
  // Only tcp leaves the host; under CURVE every message is authenticated already.
  return options.backend == "tcp" && !options.curve.enabled;
}

QueueDepth QueueDepthFor(const QueueBound& bound, const TransportOptions& options) {
  constexpr int64_t kMaxDepth = 4096;
  if (!bound.known()) {
    const int hwm = 2 * options.queue_capacity + 2;
    // ipc/tcp count segments on the sending side: a large tensor takes up to kMaxSendSegments.
    return {options.backend == "inproc" ? hwm : hwm * static_cast<int>(kMaxSendSegments), hwm};
  }
  const int64_t promised = std::max<int64_t>(bound.messages, 1);
  const int64_t floor =
      bound.max_message_bytes == 0 ? kMaxDepth : kQueueFloorBytes / bound.max_message_bytes;
  auto clamp = [&](int64_t n) { return static_cast<int>(std::min(n, kMaxDepth)); };
  return {clamp(std::max(2 * std::min(promised, kMaxDepth) + 2, floor)),
          clamp(std::max<int64_t>(2, floor))};
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
  if (options.checksums != LinkChecksums::kAuto && options.checksums != LinkChecksums::kOn &&
      options.checksums != LinkChecksums::kOff) {
    throw InvalidInput("transport options: link checksums " +
                       std::to_string(static_cast<int>(options.checksums)) +
                       " (valid: auto, on, off)");
  }
  if (options.backend == "sim") return CreateSimTransport(options);
  if (options.backend == "inproc" || options.backend == "ipc" || options.backend == "tcp") {
    return CreateZmqTransport(options);
  }
  throw InvalidInput("transport backend '" + options.backend +
                     "' is unknown (valid: sim, inproc, ipc, tcp)");
}

}  // namespace lockstep::transport
