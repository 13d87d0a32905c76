#include "lockstep/control/channel.h"

#include "ends.h"
#include "lockstep/common/error.h"

namespace lockstep::control {
namespace {

bool InMemory(const std::string& address) { return address.rfind("mem://", 0) == 0; }

InMemoryNetwork& NetworkFor(const std::string& address, const ChannelOptions& options) {
  if (options.network == nullptr) {
    throw InvalidInput("control address '" + address +
                       "': mem:// addresses live on an InMemoryNetwork; none was given");
  }
  if (options.clock != nullptr && options.clock != &options.network->clock()) {
    throw InvalidInput("control address '" + address +
                       "': the channel's clock is not its network's clock");
  }
  return *options.network;
}

Clock& RealTimeClock(const std::string& address, const ChannelOptions& options) {
  Clock& clock = options.clock != nullptr ? *options.clock : RealClock();
  if (clock.manual()) {
    throw InvalidInput("control address '" + address +
                       "': ZeroMQ waits in real time; a manual clock needs a mem:// address");
  }
  return clock;
}

}  // namespace

Clock& ChannelClock(const ChannelOptions& options) {
  if (options.clock != nullptr) return *options.clock;
  if (options.network != nullptr) return options.network->clock();
  return RealClock();
}

std::unique_ptr<ControlChannel> Listen(const std::string& address, const ChannelOptions& options) {
  if (InMemory(address)) {
    return ListenInMemory(NetworkFor(address, options).state_, address);
  }
  return ListenZmq(address, RealTimeClock(address, options));
}

std::unique_ptr<ControlConnection> Connect(const std::string& address,
                                           const ChannelOptions& options) {
  if (InMemory(address)) return ConnectInMemory(NetworkFor(address, options).state_, address);
  return ConnectZmq(address, RealTimeClock(address, options));
}

}  // namespace lockstep::control
