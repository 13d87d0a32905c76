// Private: the backend constructors behind CreateTransport, and helpers they share.
#pragma once

#include <memory>
#include <string>

#include "lockstep/transport/transport.h"

namespace lockstep::transport {

// ipc/tcp, a direction without a known bound: a large tensor leaves as up to this many segments
// (zmq_transport.cc), each a ZeroMQ message that counts against the send mark.
inline constexpr uint32_t kMaxSendSegments = 8;

std::unique_ptr<Transport> CreateSimTransport(const TransportOptions& options);
std::unique_ptr<Transport> CreateZmqTransport(const TransportOptions& options);

// The end of `link` on `chip`; InvalidInput when the chip is at neither or both ends.
PortRef LocalEnd(const LinkSpec& link, uint32_t chip);

// InvalidInput naming the link when a known bound of `link` (message.h QueueBound) exceeds
// options.max_payload_bytes or counts negative messages.
void CheckLinkSpec(const LinkSpec& link, const TransportOptions& options);

// "link chip 3:7 <-> chip 12:7: peer chip 12 did not connect within 5000 ms".
std::string PeerTimeoutMessage(const LinkSpec& link, PortRef remote, Millis timeout);

}  // namespace lockstep::transport
