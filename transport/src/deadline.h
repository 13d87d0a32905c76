// The end of a wait of `timeout`, read from the clock only once the first blocking attempt has
// failed: the happy path of a send or receive reads no clock (a read costs ~70 ns on the project
// VM, a noticeable part of a 4 KiB message's hand-off). Internal to transport/: the ZeroMQ
// backend's blocking sends and receives and Endpoint::Close's marker slices use it.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>

#include "lockstep/transport/endpoint.h"

namespace lockstep::transport {

struct Deadline {
  using Clock = std::chrono::steady_clock;
  Millis timeout;
  std::optional<Clock::time_point> at;
  // What is left: all of `timeout` before Start, else until `at` (never negative).
  Millis Left() const {
    if (!at) return timeout;
    return std::max(std::chrono::duration_cast<Millis>(*at - Clock::now()), Millis(0));
  }
  // Called after an attempt that waited and failed; `rest` was left after that wait.
  void Start(Millis rest) {
    if (!at) at = Clock::now() + rest;
  }
};

}  // namespace lockstep::transport
