// HttpServer: the OpenAI-compatible HTTP front of a deployed coordinator (`lockstep serve`).
// GET /health, GET /v1/models, GET /metrics (metrics.h), POST /v1/completions, POST
// /v1/chat/completions (with `stream: true` as Server-Sent Events ending in `data: [DONE]`);
// requests and responses as openai.h has them. HTTP/1.1 with keep-alive, by Boost.Beast, one thread
// per connection.
//
// How it meets the coordinator: the coordinator's thread runs Coordinator::Generate with this
// server's admission() hook and on_token() callback. A checked request is admitted into the
// batcher as it arrives and takes a free pipeline slot at the next step; its tokens come back
// through on_token and go out to its client as they come. A client that disconnects, or whose
// request reaches EOS or a stop string, has its request cancelled (Admission::cancelled): its
// slot is free for the next step. At most `slots + max_waiting` requests are admitted at once;
// another is answered 429 before it is admitted, so an admitted request is never dropped.
// After Stop() (or `stop_requested`) new requests get 503 and the hook ends Generate once the
// admitted requests have finished; after Fail() every open request gets a 503 error.
//
// Thread-safety: admission() and on_token() are called on the coordinator's thread; Stop(),
// Fail() and port() from any thread. The destructor stops the server and joins its threads: a
// request still open gets its 503 (a stream its error event and last chunk) before its connection
// closes; a client that does not read it is cut off after 2 s.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lockstep/coordinator/coordinator.h"
#include "lockstep/server/metrics.h"
#include "lockstep/server/openai.h"

namespace lockstep::server {

struct HttpOptions {
  std::string host = "127.0.0.1";  // address to listen on
  uint16_t port = 0;               // 0: any free port (see port())
  int32_t slots = 1;               // the deployment's pipeline slots
  // Requests admitted beyond the slots, waiting for one; more get 429. Default: as many as slots.
  int32_t max_waiting = -1;
  int32_t max_connections = 256;  // open connections; more get 503 and are closed
  size_t max_body_bytes = size_t{1} << 20;
  // Polled while the hook waits (about every 10 ms); true: Stop().
  std::function<bool()> stop_requested;
  // One line per event worth a log; empty: none.
  std::function<void(std::string_view)> log;
};

class HttpServer {
 public:
  // Binds and starts accepting. Error (kInvalidInput) naming host:port if it cannot bind.
  HttpServer(ModelCard card, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  // What GET /metrics shows; the coordinator's thread publishes the run's figures here.
  Metrics& metrics();
  // For Coordinator::Generate on the coordinator's thread; valid while the server lives.
  const coordinator::Admission& admission() const;
  coordinator::TokenCallback on_token();

  // New requests get 503; the admitted ones finish; then the hook ends Generate.
  void Stop();
  // The run failed (a worker lost): every open request gets a 503 error naming `why`, and so do
  // new ones.
  void Fail(const std::string& why);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::server
