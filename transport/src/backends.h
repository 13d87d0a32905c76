// Private: the backend constructors behind CreateTransport, and helpers they share.
#pragma once

#include <memory>
#include <string>

#include "lockstep/transport/transport.h"

namespace lockstep::transport {

std::unique_ptr<Transport> CreateSimTransport(const TransportOptions& options);
std::unique_ptr<Transport> CreateZmqTransport(const TransportOptions& options);

// The end of `link` on `chip`; InvalidInput when the chip is at neither or both ends.
PortRef LocalEnd(const LinkSpec& link, uint32_t chip);

// "link chip 3:7 <-> chip 12:7: peer chip 12 did not connect within 5000 ms".
std::string PeerTimeoutMessage(const LinkSpec& link, PortRef remote, Millis timeout);

}  // namespace lockstep::transport
