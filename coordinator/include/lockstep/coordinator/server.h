// Server: a deployed Coordinator serving clients over the network (lockstep-coordinator --serve).
// It binds its own client socket (a ZeroMQ ROUTER, apart from the workers' control socket; the
// conversation is in proto/control.capnp) and runs Coordinator::Generate with an admission hook:
// each client request is admitted into a free pipeline slot as it arrives, while others run; its
// tokens stream back to its client as the sampling chip returns them, then its result. A request
// the batcher refuses (prompt + max_new beyond the positions a slot holds, an empty prompt ...)
// gets a `done` carrying the error, and the server keeps serving.
//
// Run() returns when `stop_requested` says so (a signal handler's flag) or a client sends
// stopServer: requests still waiting or running are answered with an error (kUnavailable,
// "the coordinator is shutting down"); the caller then shuts the workers down
// (Coordinator::Shutdown). A worker failure ends Run() with that Error, after every client with a
// request in flight was told.
//
// Thread-safety: one thread; the Coordinator must not be used by anyone else during Run().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lockstep/coordinator/coordinator.h"

namespace lockstep::coordinator {

struct ServeOptions {
  // Where clients connect: tcp://HOST:PORT (port 0: any free port; see Server::address()) or
  // ipc://PATH.
  std::string address = "tcp://127.0.0.1:0";
  // Prompt tokens must be in [0, vocab_size) (the model's); a request with another is refused
  // rather than failing the run on its embedding chip. 0: not checked.
  int64_t vocab_size = 0;
  // Polled about every 10 ms while idle and before every step; true ends Run().
  std::function<bool()> stop_requested;
  // One line per event worth a log ("client request 3: 4 tokens"); empty: none.
  std::function<void(std::string_view)> log;
};

struct ServeStats {
  int64_t requests = 0;  // answered with their tokens
  int64_t refused = 0;   // answered with an error
};

class Server {
 public:
  // Binds the client socket; InvalidInput naming the address if it cannot. `coordinator` must be
  // deployed and outlive the Server.
  Server(Coordinator& coordinator, ServeOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& address() const;
  // Serves until stopped (see above).
  ServeStats Run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::coordinator
