#include "lockstep/server/http_server.h"

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/server/metrics.h"

namespace lockstep::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using std::chrono::milliseconds;

// One admitted request, shared by its connection's thread and the coordinator's.
struct Job {
  uint64_t id = 0;
  coordinator::Request request;
  std::mutex m;
  std::condition_variable cv;
  std::vector<int32_t> tokens;                               // as they came
  std::vector<std::chrono::steady_clock::time_point> times;  // when each came (metrics only)
  std::chrono::steady_clock::time_point admitted;
  bool finished = false;
  std::string error;  // the run failed (Fail)
};

struct Connection {
  std::thread thread;
  int fd = -1;
  std::atomic<bool> done{false};
  std::atomic<bool> busy{false};  // handling a request (not waiting for the next one)
};

// The client closed its end (or the connection broke) while we wait for tokens.
bool ClientGone(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace

struct HttpServer::Impl {
  ModelCard card;
  HttpOptions options;
  net::io_context io;
  tcp::acceptor acceptor{io};
  uint16_t port = 0;
  std::thread accept_thread;

  std::mutex mu;  // everything below
  std::condition_variable arrived;
  std::deque<std::shared_ptr<Job>> incoming;
  std::map<uint64_t, std::shared_ptr<Job>> active;  // admitted, not finished
  std::vector<uint64_t> cancels;
  int64_t admitted = 0;  // incoming + active
  uint64_t next_id = 1;
  bool stopping = false;
  std::atomic<bool> closing{false};  // the destructor runs: no connection waits for another request
  std::string failure;
  std::list<Connection> connections;

  coordinator::Admission hook;
  Metrics metrics;

  int64_t Capacity() const {
    return options.slots + (options.max_waiting >= 0 ? options.max_waiting : options.slots);
  }
  void Log(const std::string& line) const {
    if (options.log) options.log(line);
  }

  // Admits a checked request or throws ApiError (429 full, 503 stopping or failed).
  std::shared_ptr<Job> Admit(const GenerationRequest& r) {
    std::lock_guard lock(mu);
    if (!failure.empty())
      throw ApiError(503, "the server cannot run requests: " + failure, "", "server_error");
    if (stopping) throw ApiError(503, "the server is shutting down", "", "server_error");
    if (admitted >= Capacity()) {
      metrics.Request("full");
      throw ApiError(429,
                     "the server is full: " + std::to_string(admitted) + " requests admitted (" +
                         std::to_string(options.slots) + " slots and their queue); retry later",
                     "", "rate_limit_error");
    }
    auto job = std::make_shared<Job>();
    job->id = next_id++;
    job->request = {job->id, r.prompt, r.max_tokens, r.sampling};
    job->admitted = std::chrono::steady_clock::now();
    metrics.PromptTokens(static_cast<int64_t>(r.prompt.size()));
    incoming.push_back(job);
    ++admitted;
    arrived.notify_all();
    return job;
  }
  void Cancel(const Job& job) {
    std::lock_guard lock(mu);
    cancels.push_back(job.id);
  }

  bool Poll(const std::function<void(coordinator::Request)>& submit, bool idle) {
    std::deque<std::shared_ptr<Job>> now;
    {
      std::unique_lock lock(mu);
      if (incoming.empty() && idle && !stopping) arrived.wait_for(lock, milliseconds(10));
      now.swap(incoming);
      for (const auto& job : now) active[job->id] = job;
    }
    for (const auto& job : now) {
      try {
        submit(job->request);
      } catch (const Error& e) {  // checked before admission; a refusal here is a bug
        Finish({job->id, {}, {}}, std::string("the coordinator refused the request: ") + e.what());
      }
    }
    if (options.stop_requested && options.stop_requested()) {
      std::lock_guard lock(mu);
      stopping = true;
    }
    std::lock_guard lock(mu);
    return !stopping;
  }

  void Finish(const coordinator::Finished& f, const std::string& error = "") {
    std::shared_ptr<Job> job;
    {
      std::lock_guard lock(mu);
      auto it = active.find(f.id);
      if (it == active.end()) return;
      job = it->second;
      active.erase(it);
      --admitted;
    }
    std::lock_guard lock(job->m);
    job->finished = true;
    job->error = error;
    job->cv.notify_all();
  }

  void Token(uint64_t id, int32_t token) {
    std::shared_ptr<Job> job;
    {
      std::lock_guard lock(mu);
      auto it = active.find(id);
      if (it == active.end()) return;
      job = it->second;
    }
    std::lock_guard lock(job->m);
    job->tokens.push_back(token);
    job->times.push_back(std::chrono::steady_clock::now());
    job->cv.notify_all();
  }

  void AcceptLoop();
  void Serve(tcp::socket socket, Connection* connection);
  bool Handle(tcp::socket& socket, const http::request<http::string_body>& req);
  bool Generate(tcp::socket& socket, const http::request<http::string_body>& req,
                Endpoint endpoint);
};

namespace {

template <class Body>
void Write(tcp::socket& socket, http::response<Body>& res) {
  res.prepare_payload();
  http::write(socket, res);
}

void Send(tcp::socket& socket, unsigned version, bool keep_alive, int status,
          const std::string& body, const std::string& type = "application/json") {
  http::response<http::string_body> res{static_cast<http::status>(status), version};
  res.set(http::field::server, "lockstep");
  res.set(http::field::content_type, type);
  res.keep_alive(keep_alive);
  res.body() = body;
  Write(socket, res);
}

}  // namespace

void HttpServer::Impl::AcceptLoop() {
  while (true) {
    tcp::socket socket(io);
    boost::system::error_code ec;
    acceptor.accept(socket, ec);
    std::lock_guard lock(mu);
    // Threads of closed connections are joined here, as new ones come.
    for (auto it = connections.begin(); it != connections.end();) {
      if (it->done) {
        it->thread.join();
        it = connections.erase(it);
      } else {
        ++it;
      }
    }
    if (stopping && !acceptor.is_open()) return;
    if (ec) {
      if (ec == net::error::invalid_argument || ec == net::error::bad_descriptor ||
          ec == net::error::operation_aborted) {
        return;  // the acceptor was shut down
      }
      continue;
    }
    if (static_cast<int32_t>(connections.size()) >= options.max_connections) {
      boost::system::error_code ignored;
      try {
        Send(socket, 11, false, 503,
             ApiError(503, "too many open connections", "", "server_error").Json());
      } catch (...) {
      }
      socket.close(ignored);
      continue;
    }
    // Each SSE event is a small write after the headers: with Nagle's algorithm on, it waits for
    // the client's delayed ACK (~40 ms on Linux) whenever an earlier write is unacknowledged.
    boost::system::error_code nodelay;
    socket.set_option(tcp::no_delay(true), nodelay);
    Connection& c = connections.emplace_back();
    c.fd = socket.native_handle();
    c.thread = std::thread([this, s = std::move(socket), &c]() mutable {
      Serve(std::move(s), &c);
      c.done = true;
    });
  }
}

void HttpServer::Impl::Serve(tcp::socket socket, Connection* connection) {
  beast::flat_buffer buffer;
  try {
    while (true) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(options.max_body_bytes);
      boost::system::error_code ec;
      http::read(socket, buffer, parser, ec);
      if (ec == http::error::body_limit) {
        Send(socket, 11, false, 413,
             ApiError(413, "the body exceeds " + std::to_string(options.max_body_bytes) + " bytes")
                 .Json());
        break;
      }
      if (ec == http::error::end_of_stream || ec) break;
      connection->busy = true;
      const bool keep = Handle(socket, parser.get());
      connection->busy = false;
      if (!keep || closing) break;
    }
  } catch (const std::exception& e) {
    Log(std::string("connection: ") + e.what());  // a write to a client that went away
  }
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  std::lock_guard lock(mu);
  connection->fd = -1;
  socket.close(ignored);
}

bool HttpServer::Impl::Handle(tcp::socket& socket, const http::request<http::string_body>& req) {
  const std::string target(req.target());
  const std::string path = target.substr(0, target.find('?'));
  const bool keep = req.keep_alive();
  auto method_not_allowed = [&](const char* allowed) {
    Send(socket, req.version(), keep, 405,
         ApiError(405, std::string("use ") + allowed + " " + path).Json());
    return keep;
  };
  if (path == "/health") {
    if (req.method() != http::verb::get) return method_not_allowed("GET");
    std::lock_guard lock(mu);
    const bool ok = failure.empty() && !stopping;
    Send(
        socket, req.version(), keep, ok ? 200 : 503,
        ok ? R"({"status":"ok"})"
           : ApiError(503, failure.empty() ? "shutting down" : failure, "", "server_error").Json());
    return keep;
  }
  if (path == "/metrics") {
    if (req.method() != http::verb::get) return method_not_allowed("GET");
    {
      std::lock_guard lock(mu);
      int64_t waiting = static_cast<int64_t>(incoming.size()), running = 0;
      for (const auto& [id, job] : active) {
        std::lock_guard jl(job->m);
        (job->tokens.empty() ? waiting : running) += 1;
      }
      metrics.Queue(waiting, running);
    }
    Send(socket, req.version(), keep, 200, metrics.Render(), "text/plain; version=0.0.4");
    return keep;
  }
  if (path == "/v1/models") {
    if (req.method() != http::verb::get) return method_not_allowed("GET");
    Send(socket, req.version(), keep, 200, ModelsJson(card));
    return keep;
  }
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (req.method() != http::verb::post) return method_not_allowed("POST");
    return Generate(
        socket, req,
        path == "/v1/completions" ? Endpoint::kCompletions : Endpoint::kChatCompletions);
  }
  Send(socket, req.version(), keep, 404,
       ApiError(404, "no such endpoint: " + std::string(req.method_string()) + " " + path +
                         " (GET /health, GET /v1/models, POST /v1/completions, POST "
                         "/v1/chat/completions)")
           .Json());
  return keep;
}

bool HttpServer::Impl::Generate(tcp::socket& socket, const http::request<http::string_body>& req,
                                Endpoint endpoint) {
  const bool keep = req.keep_alive();
  GenerationRequest r;
  std::shared_ptr<Job> job;
  try {
    r = ParseRequest(endpoint, req.body(), card);
    job = Admit(r);
  } catch (const ApiError& e) {
    if (e.status() != 429) metrics.Request(e.status() < 500 ? "rejected" : "failed");
    Log(std::string("refused (") + std::to_string(e.status()) + "): " + e.what());
    Send(socket, req.version(), keep, e.status(), e.Json());
    return keep;
  }
  const std::string id =
      (endpoint == Endpoint::kCompletions ? "cmpl-" : "chatcmpl-") + std::to_string(job->id);
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  TextStream text(card, r);
  Usage usage{static_cast<int64_t>(r.prompt.size()), 0};
  std::vector<int32_t> ids;
  std::string finish;

  std::optional<http::response<http::empty_body>> head;
  std::optional<http::response_serializer<http::empty_body>> serializer;
  auto event = [&](const std::string& data) {
    const std::string e = "data: " + data + "\n\n";
    net::write(socket, http::make_chunk(net::buffer(e)));
  };
  if (r.stream) {
    head.emplace(http::status::ok, req.version());
    head->set(http::field::server, "lockstep");
    head->set(http::field::content_type, "text/event-stream");
    head->set(http::field::cache_control, "no-cache");
    head->chunked(true);
    head->keep_alive(keep);
    serializer.emplace(*head);
    http::write_header(socket, *serializer);
    if (endpoint == Endpoint::kChatCompletions) {
      event(ChunkJson(endpoint, id, created, card.id, {}, /*first=*/true));
    }
  }
  size_t seen = 0;
  std::chrono::steady_clock::time_point last_time;
  std::vector<int32_t> unsent;  // streamed ids not sent yet
  bool cancelled = false;
  std::string error;
  try {
    while (finish.empty()) {
      std::vector<int32_t> fresh;
      std::vector<std::chrono::steady_clock::time_point> times;
      bool done = false;
      {
        std::unique_lock lock(job->m);
        job->cv.wait_for(lock, milliseconds(50), [&] {
          return job->tokens.size() > seen || job->finished || !job->error.empty();
        });
        fresh.assign(job->tokens.begin() + static_cast<ptrdiff_t>(seen), job->tokens.end());
        times.assign(job->times.begin() + static_cast<ptrdiff_t>(seen), job->times.end());
        seen = job->tokens.size();
        done = job->finished;
        error = job->error;
      }
      // Tokens that came before a failure still go out, then the error.
      for (size_t i = 0; i < fresh.size(); ++i) {
        const int32_t t = fresh[i];
        const auto since = ids.empty() ? job->admitted : last_time;
        last_time = times[i];
        if (ids.empty()) {
          metrics.FirstToken(std::chrono::duration<double>(last_time - since).count());
        } else {
          metrics.NextToken(std::chrono::duration<double>(last_time - since).count());
        }
        TextStream::Delta d = text.Push(t);
        ids.push_back(t);
        ++usage.completion_tokens;
        if (d.stop) finish = "stop";
        unsent.push_back(t);
        // A token that completes no character yet goes out with the next one that does.
        if (r.stream && (!d.text.empty() || card.tokenizer == nullptr || d.stop)) {
          event(ChunkJson(endpoint, id, created, card.id, {d.text, unsent, ""}, false));
          unsent.clear();
        }
        if (d.stop) break;
      }
      if (!error.empty()) break;
      if (finish.empty() && done) {
        finish = "length";
        const std::string rest = text.Finish();
        if (r.stream && !rest.empty()) {
          event(ChunkJson(endpoint, id, created, card.id, {rest, unsent, ""}, false));
          unsent.clear();
        }
      }
      if (!finish.empty() && !done) {
        Cancel(*job);  // a stop: its slot is free for the next step
        cancelled = true;
      }
      if (finish.empty() && ClientGone(socket.native_handle())) {
        Log("request " + std::to_string(job->id) + ": the client went away; its slot is freed");
        metrics.Request("cancelled");
        Cancel(*job);
        return false;
      }
    }
  } catch (...) {
    metrics.Request("cancelled");
    if (!cancelled) Cancel(*job);  // the client went away mid-stream
    throw;
  }
  if (!error.empty()) {
    metrics.Request("failed");
    const ApiError e(503, error, "", "server_error");
    if (r.stream) {
      event(e.Json());
      net::write(socket, http::make_chunk_last());
      return false;
    }
    Send(socket, req.version(), false, 503, e.Json());
    return false;
  }
  metrics.Request(finish);
  if (r.stream) {
    event(ChunkJson(endpoint, id, created, card.id, {"", unsent, finish}, false));
    if (r.include_usage) event(UsageChunkJson(endpoint, id, created, card.id, usage));
    event("[DONE]");
    net::write(socket, http::make_chunk_last());
    return keep;
  }
  Send(socket, req.version(), keep, 200,
       ResponseJson(endpoint, id, created, card.id, {text.text(), ids, finish}, usage));
  return keep;
}

HttpServer::HttpServer(ModelCard card, HttpOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.card = std::move(card);
  im.options = std::move(options);
  const std::string where = im.options.host + ":" + std::to_string(im.options.port);
  boost::system::error_code ec;
  const net::ip::address address = net::ip::make_address(im.options.host, ec);
  if (ec)
    throw InvalidInput("--http " + where + ": '" + im.options.host + "' is not an IP address");
  const tcp::endpoint endpoint(address, im.options.port);
  im.acceptor.open(endpoint.protocol(), ec);
  if (!ec) im.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor.bind(endpoint, ec);
  if (!ec) im.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw InvalidInput("--http " + where + ": cannot listen: " + ec.message());
  im.port = im.acceptor.local_endpoint().port();
  im.hook.poll = [&im](const std::function<void(coordinator::Request)>& submit, bool idle) {
    return im.Poll(submit, idle);
  };
  im.hook.on_finished = [&im](coordinator::Finished f) { im.Finish(f); };
  im.hook.cancelled = [&im] {
    std::lock_guard lock(im.mu);
    std::vector<uint64_t> out;
    out.swap(im.cancels);
    return out;
  };
  im.accept_thread = std::thread([&im] { im.AcceptLoop(); });
}

HttpServer::~HttpServer() {
  Impl& im = *impl_;
  {
    std::lock_guard lock(im.mu);
    im.stopping = true;
    im.closing = true;
    if (im.failure.empty()) im.failure = "the server stopped";
    // Wake every waiting connection: their requests will never finish now.
    for (auto& [id, job] : im.active) {
      std::lock_guard jl(job->m);
      job->error = im.failure;
      job->cv.notify_all();
    }
    for (auto& job : im.incoming) {
      std::lock_guard jl(job->m);
      job->error = im.failure;
      job->cv.notify_all();
    }
    ::shutdown(im.acceptor.native_handle(), SHUT_RDWR);
    // Idle keep-alive connections are closed now; those handling a request first send its
    // answer (a 503, or a stream's error event and last chunk) and then close.
    for (Connection& c : im.connections) {
      if (c.fd >= 0 && !c.busy) ::shutdown(c.fd, SHUT_RDWR);
    }
  }
  im.accept_thread.join();
  std::list<Connection> rest;
  {
    std::lock_guard lock(im.mu);
    rest.swap(im.connections);
  }
  // A client that does not read its answer must not hold the server: after a bound, its
  // socket is shut too.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  auto open = [&] {
    for (const Connection& c : rest) {
      if (!c.done) return true;
    }
    return false;
  };
  while (open() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  {
    std::lock_guard lock(im.mu);
    for (Connection& c : rest) {
      if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
    }
  }
  for (Connection& c : rest) c.thread.join();
}

uint16_t HttpServer::port() const { return impl_->port; }

Metrics& HttpServer::metrics() { return impl_->metrics; }

const coordinator::Admission& HttpServer::admission() const { return impl_->hook; }

coordinator::TokenCallback HttpServer::on_token() {
  return [&im = *impl_](uint64_t id, int32_t token, int64_t) { im.Token(id, token); };
}

void HttpServer::Stop() {
  std::lock_guard lock(impl_->mu);
  impl_->stopping = true;
  impl_->arrived.notify_all();
}

void HttpServer::Fail(const std::string& why) {
  Impl& im = *impl_;
  std::lock_guard lock(im.mu);
  im.failure = why;
  for (auto& [id, job] : im.active) {
    std::lock_guard jl(job->m);
    job->error = why;
    job->cv.notify_all();
  }
  for (auto& job : im.incoming) {
    std::lock_guard jl(job->m);
    job->error = why;
    job->cv.notify_all();
  }
}

}  // namespace lockstep::server
