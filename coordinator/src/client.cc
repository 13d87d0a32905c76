#include "lockstep/coordinator/client.h"

#include "lockstep/control/channel.h"
#include "lockstep/control/messages.h"

namespace lockstep::coordinator {

using control::AcceptedMsg;
using control::ControlMessage;
using control::DoneMsg;
using control::ShutdownMsg;
using control::StopServerMsg;
using control::SubmitMsg;
using control::TokenMsg;

using control::Millis;

struct Client::Impl {
  Impl(std::string a, ClientOptions o)
      : address(std::move(a)),
        options(o),
        clock(control::ChannelClock(options.control)),
        socket(control::Connect(address, options.control)) {}
  std::string address;
  ClientOptions options;
  control::Clock& clock;  // the one the connection waits on (channel.h)
  std::unique_ptr<control::ControlConnection> socket;
  uint64_t next_id = 1;
};

Client::Client(std::string address, ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(address), options)) {}

Client::~Client() = default;

std::vector<int32_t> Client::Generate(const std::vector<int32_t>& prompt, int64_t max_new,
                                      const model::SamplingOptions& sampling,
                                      const std::function<void(int32_t, int64_t)>& on_token) {
  Impl& im = *impl_;
  const uint64_t id = im.next_id++;
  im.socket->Send(SubmitMsg{id, prompt, max_new, sampling});
  bool accepted = false;
  int64_t next_index = 0;
  control::Clock::TimePoint deadline = im.clock.Now() + im.options.connect_timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - im.clock.Now());
    std::optional<ControlMessage> m =
        left.count() > 0 ? im.socket->Receive(left) : std::optional<ControlMessage>{};
    if (!m) {
      if (!accepted) {
        throw Error(ErrorCode::kUnavailable,
                    "no coordinator answered at " + im.address + " within " +
                        std::to_string(im.options.connect_timeout.count()) +
                        " ms (is lockstep-coordinator --serve running there?)");
      }
      throw Error(ErrorCode::kUnavailable,
                  "the coordinator at " + im.address + " stopped answering for " +
                      std::to_string(im.options.reply_timeout.count()) + " ms (gone?)");
    }
    if (const auto* a = std::get_if<AcceptedMsg>(&*m); a && a->id == id) {
      accepted = true;
    } else if (const auto* t = std::get_if<TokenMsg>(&*m); t && t->id == id) {
      accepted = true;
      if (t->index != next_index) {
        throw Error(ErrorCode::kProtocol, "the coordinator at " + im.address + " sent token " +
                                              std::to_string(t->index) + " while token " +
                                              std::to_string(next_index) + " was due");
      }
      ++next_index;
      if (on_token) on_token(t->token, t->index);
    } else if (const auto* d = std::get_if<DoneMsg>(&*m); d && d->id == id) {
      if (!d->error.empty()) {
        throw Error(d->code, "the coordinator at " + im.address +
                                 " refused or failed the "
                                 "request: " +
                                 d->error);
      }
      return d->tokens;
    } else if (std::holds_alternative<ShutdownMsg>(*m)) {
      throw Error(ErrorCode::kUnavailable, "the coordinator at " + im.address + " shut down");
    }
    // Anything else (a late message of an earlier request) is ignored.
    deadline = im.clock.Now() + (accepted ? im.options.reply_timeout : im.options.connect_timeout);
  }
}

void Client::RequestShutdown() {
  impl_->socket->Send(StopServerMsg{});
  // Give ZeroMQ a moment to pass the message on before the socket closes (it lingers 500 ms).
  impl_->socket->Receive(Millis(50));
}

}  // namespace lockstep::coordinator
