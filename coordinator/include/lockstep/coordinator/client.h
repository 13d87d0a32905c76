// Client: submits prompts to a serving coordinator (lockstep-coordinator --serve ADDR, server.h)
// over the network and receives the tokens as they are produced.
//
// One Client holds one connection; Generate() sends one request and blocks until its result,
// calling `on_token` for each token as it arrives (in order). Several Clients — threads or
// processes — may talk to one coordinator at once: it admits their requests into free pipeline
// slots while others run, and each result is what the request would give alone.
//
// Errors are Error values the caller can act on:
//   * kUnavailable — nothing answered at the address within `connect_timeout` (wrong address,
//     coordinator not up), or the coordinator fell silent for `reply_timeout` mid-request
//     (gone), or it is shutting down;
//   * kInvalidInput — the coordinator refused the request (prompt + max_new beyond what its
//     slots hold, an empty prompt, a token outside the vocabulary ...), with its reason;
//   * the code of a worker failure the coordinator reports.
//
// Thread-safety: one thread uses a Client.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/control/channel.h"
#include "lockstep/model/reference.h"

namespace lockstep::coordinator {

struct ClientOptions {
  // The first answer (the request's acceptance) must come within this.
  std::chrono::milliseconds connect_timeout{5000};
  // Once accepted, the coordinator may be silent this long between tokens (a long prefill on a
  // slow host takes a while) before it is declared gone.
  std::chrono::milliseconds reply_timeout{60000};
  // The connection's clock (both timeouts are measured on it) and, for mem://, its network.
  control::ChannelOptions control{};
};

class Client {
 public:
  // `address`: the coordinator's client address, tcp://HOST:PORT or ipc://PATH (or mem://NAME on
  // options.control.network). Connecting is
  // lazy; InvalidInput for a malformed address.
  explicit Client(std::string address, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Generates up to `max_new` tokens after `prompt` (token ids); returns them all. See above
  // for the errors.
  std::vector<int32_t> Generate(
      const std::vector<int32_t>& prompt, int64_t max_new,
      const model::SamplingOptions& sampling = {},
      const std::function<void(int32_t token, int64_t index)>& on_token = {});

  // Asks the coordinator to finish what runs, stop its workers and exit. Returns at once.
  void RequestShutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::coordinator
