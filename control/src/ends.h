// The implementations behind Listen / Connect (channel.cc chooses by address). Private to the
// control library.
#pragma once

#include <memory>
#include <string>

#include "lockstep/control/channel.h"

namespace lockstep::control {

std::unique_ptr<ControlChannel> ListenZmq(const std::string& address, Clock& clock);
std::unique_ptr<ControlConnection> ConnectZmq(const std::string& address, Clock& clock);

std::unique_ptr<ControlChannel> ListenInMemory(
    const std::shared_ptr<InMemoryNetwork::State>& network, const std::string& address);
std::unique_ptr<ControlConnection> ConnectInMemory(
    const std::shared_ptr<InMemoryNetwork::State>& network, const std::string& address);

}  // namespace lockstep::control
