// HttpServer against a fake coordinator thread: this test plays the coordinator's side of the
// admission hook (poll, on_token, on_finished, cancelled) so that fullness, disconnects and
// failures happen exactly when the test says, over real HTTP on a loopback port.
#include "lockstep/server/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

namespace lockstep::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using nlohmann::json;

struct Client {
  explicit Client(uint16_t port) { socket.connect({net::ip::make_address("127.0.0.1"), port}); }
  void Post(const std::string& target, const std::string& body) {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    http::write(socket, req);
  }
  http::response<http::string_body> Read() {
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    return res;
  }
  net::io_context io;
  tcp::socket socket{io};
  beast::flat_buffer buffer;
};

// The coordinator's side of the hook.
class FakeCoordinator {
 public:
  explicit FakeCoordinator(HttpServer& server) : server_(server) {}
  // Polls until a request is submitted (or 5 s pass).
  std::optional<coordinator::Request> NextRequest() {
    for (int i = 0; i < 500; ++i) {
      std::optional<coordinator::Request> got;
      server_.admission().poll([&](coordinator::Request r) { got = std::move(r); }, true);
      if (got) return got;
    }
    return std::nullopt;
  }
  // Asks `cancelled` until `id` is in it (or 5 s pass).
  bool AwaitCancel(uint64_t id) {
    for (int i = 0; i < 500; ++i) {
      for (uint64_t c : server_.admission().cancelled()) {
        if (c == id) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  HttpServer& server_;
};

HttpOptions Options(int32_t slots, int32_t max_waiting = -1) {
  HttpOptions o;
  o.slots = slots;
  o.max_waiting = max_waiting;
  return o;
}

ModelCard Card() {
  ModelCard card;
  card.id = "m";
  card.context = 64;
  card.vocab_size = 100;
  return card;
}

const char* kBody = R"({"model":"m","prompt":[1,2],"max_tokens":2,"temperature":0})";

TEST(HttpServer, FullServerAnswers429AndLosesNoAdmittedRequest) {
  HttpServer server(Card(), Options(1, 0));
  FakeCoordinator coord(server);
  Client a(server.port());
  a.Post("/v1/completions", kBody);
  std::optional<coordinator::Request> ra = coord.NextRequest();
  ASSERT_TRUE(ra);
  EXPECT_EQ(ra->prompt, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(ra->max_new, 2);
  Client b(server.port());
  b.Post("/v1/completions", kBody);
  http::response<http::string_body> full = b.Read();
  EXPECT_EQ(full.result_int(), 429);
  EXPECT_EQ(json::parse(full.body())["error"]["type"], "rate_limit_error");
  // A's request runs to its end and answers.
  server.on_token()(ra->id, 7, 0);
  server.on_token()(ra->id, 8, 1);
  server.admission().on_finished({ra->id, {7, 8}, {}});
  http::response<http::string_body> done = a.Read();
  ASSERT_EQ(done.result_int(), 200) << done.body();
  EXPECT_EQ(json::parse(done.body())["choices"][0]["token_ids"], json({7, 8}));
  // Room again: B's retry is admitted.
  b.Post("/v1/completions", kBody);
  std::optional<coordinator::Request> rb = coord.NextRequest();
  ASSERT_TRUE(rb);
  EXPECT_NE(rb->id, ra->id);
  server.admission().on_finished({rb->id, {}, {}});
  EXPECT_EQ(b.Read().result_int(), 200);
}

TEST(HttpServer, AClientThatDisconnectsHasItsRequestCancelled) {
  HttpServer server(Card(), Options(1));
  FakeCoordinator coord(server);
  std::optional<coordinator::Request> r;
  {
    Client c(server.port());
    c.Post("/v1/completions",
           R"({"model":"m","prompt":[3],"max_tokens":50,"temperature":0,"stream":true})");
    r = coord.NextRequest();
    ASSERT_TRUE(r);
    server.on_token()(r->id, 9, 0);
  }  // the client goes away mid-stream
  EXPECT_TRUE(coord.AwaitCancel(r->id));
  server.admission().on_finished({r->id, {9}, {}});
}

TEST(HttpServer, StreamsEventsEndingInDoneAndFailsOpenRequestsWith503) {
  HttpServer server(Card(), Options(2));
  FakeCoordinator coord(server);
  Client s(server.port());
  s.Post("/v1/completions", R"({"model":"m","prompt":[3],"max_tokens":2,"stream":true})");
  std::optional<coordinator::Request> r = coord.NextRequest();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sampling.temperature, 1.0);  // OpenAI's default
  server.on_token()(r->id, 4, 0);
  server.on_token()(r->id, 5, 1);
  server.admission().on_finished({r->id, {4, 5}, {}});
  http::response<http::string_body> res = s.Read();
  EXPECT_EQ(res[http::field::content_type], "text/event-stream");
  const std::string& body = res.body();
  EXPECT_NE(body.find("\"token_ids\":[4]"), std::string::npos) << body;
  EXPECT_NE(body.find("\"finish_reason\":\"length\""), std::string::npos) << body;
  EXPECT_TRUE(body.ends_with("data: [DONE]\n\n")) << body;

  Client f(server.port());
  f.Post("/v1/completions", kBody);
  ASSERT_TRUE(coord.NextRequest());
  server.Fail("chip 3 was killed by signal 9");
  http::response<http::string_body> failed = f.Read();
  EXPECT_EQ(failed.result_int(), 503);
  EXPECT_NE(failed.body().find("chip 3"), std::string::npos);
  Client h(server.port());
  http::request<http::string_body> get{http::verb::get, "/health", 11};
  http::write(h.socket, get);
  EXPECT_EQ(h.Read().result_int(), 503);
}

// The server's end of a connection to `port` in this process (the test hosts the server), or -1.
int AcceptedSocketOn(uint16_t port) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(entry.path().filename().string());
    sockaddr_in local{}, peer{};
    socklen_t n = sizeof local, m = sizeof peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &n) != 0) continue;
    if (local.sin_family != AF_INET || ntohs(local.sin_port) != port) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &m) != 0) continue;  // the listener
    return fd;
  }
  return -1;
}

// Streamed events are small writes: with Nagle's algorithm each one after the first waits for
// the client's delayed ACK (~40 ms), which made every time to first token ~44 ms.
TEST(HttpServer, AcceptedConnectionsSendWithoutNagleDelay) {
  HttpServer server(Card(), Options(1));
  Client c(server.port());
  c.Post("/v1/completions", R"({"model":"m","prompt":[3],"max_tokens":1,"stream":true})");
  FakeCoordinator coord(server);
  ASSERT_TRUE(coord.NextRequest());  // the connection is accepted and served by now
  const int fd = AcceptedSocketOn(server.port());
  ASSERT_GE(fd, 0);
  int on = 0;
  socklen_t len = sizeof on;
  ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
  EXPECT_NE(on, 0);
}

// `lockstep serve` on SIGINT/SIGTERM: Fail, then the server is destroyed at once. A streaming
// client still gets its error event and the stream's last chunk, a waiting one its 503, before
// their connections close; an idle keep-alive connection is closed.
TEST(HttpServer, ClientsInFlightGetTheirErrorWhenFailIsFollowedByDestruction) {
  auto server = std::make_unique<HttpServer>(Card(), Options(2));
  FakeCoordinator coord(*server);
  Client s(server->port());
  s.Post("/v1/completions", R"({"model":"m","prompt":[3],"max_tokens":8,"stream":true})");
  std::optional<coordinator::Request> r = coord.NextRequest();
  ASSERT_TRUE(r);
  server->on_token()(r->id, 4, 0);
  Client w(server->port());
  w.Post("/v1/completions", kBody);
  ASSERT_TRUE(coord.NextRequest());
  Client idle(server->port());
  http::request<http::string_body> get{http::verb::get, "/health", 11};
  http::write(idle.socket, get);
  EXPECT_EQ(idle.Read().result_int(), 200);

  server->Fail("the server is shutting down (signal 15)");
  server.reset();
  http::response<http::string_body> streamed = s.Read();  // throws if cut before the last chunk
  EXPECT_NE(streamed.body().find("\"token_ids\":[4]"), std::string::npos) << streamed.body();
  EXPECT_NE(streamed.body().find("signal 15"), std::string::npos) << streamed.body();
  http::response<http::string_body> waited = w.Read();
  EXPECT_EQ(waited.result_int(), 503);
  EXPECT_NE(waited.body().find("signal 15"), std::string::npos) << waited.body();
  beast::error_code ec;
  http::response<http::string_body> none;
  http::read(idle.socket, idle.buffer, none, ec);
  EXPECT_TRUE(ec) << "an idle connection stays open after the server is gone";
}

}  // namespace
}  // namespace lockstep::server
