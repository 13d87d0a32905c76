#include "lockstep/coordinator/server.h"

#include <map>
#include <utility>

#include "lockstep/control/channel.h"
#include "lockstep/control/messages.h"

namespace lockstep::coordinator {

using control::AcceptedMsg;
using control::DoneMsg;
using control::MessageName;
using control::StopServerMsg;
using control::SubmitMsg;
using control::TokenMsg;
namespace {

constexpr Millis kIdlePoll{10};

}  // namespace

struct Server::Impl {
  Impl(Coordinator& c, ServeOptions o)
      : coordinator(c), options(std::move(o)), socket(control::Listen(options.address)) {}

  struct Pending {
    std::string peer;
    uint64_t client_id = 0;
  };

  Coordinator& coordinator;
  ServeOptions options;
  std::unique_ptr<control::ControlChannel> socket;
  // Our request id (unique in this server, in arrival order) -> its client and the client's id.
  std::map<uint64_t, Pending> pending;
  uint64_t next_id = 1;
  bool stop = false;
  ServeStats stats;

  void Log(const std::string& line) const {
    if (options.log) options.log(line);
  }

  void Refuse(const std::string& peer, uint64_t client_id, ErrorCode code, const std::string& why) {
    socket->Send(peer, DoneMsg{client_id, {}, code, why});
    ++stats.refused;
    Log("refused client request " + std::to_string(client_id) + ": " + why);
  }

  void OnMessage(control::ControlChannel::Incoming& in,
                 const std::function<void(Request)>& submit) {
    if (!in.message) {
      Log("ignored a malformed client message: " + in.error);
      return;
    }
    if (std::holds_alternative<StopServerMsg>(*in.message)) {
      Log("a client asked the coordinator to stop");
      stop = true;
      return;
    }
    const auto* s = std::get_if<SubmitMsg>(&*in.message);
    if (s == nullptr) {
      Log(std::string("ignored a client's ") + MessageName(*in.message) + " message");
      return;
    }
    if (stop) {
      Refuse(in.peer, s->id, ErrorCode::kUnavailable, "the coordinator is shutting down");
      return;
    }
    for (int32_t t : s->prompt) {
      if (t < 0 || (options.vocab_size > 0 && t >= options.vocab_size)) {
        Refuse(in.peer, s->id, ErrorCode::kInvalidInput,
               "prompt token " + std::to_string(t) + " is outside the vocabulary [0, " +
                   std::to_string(options.vocab_size) + ")");
        return;
      }
    }
    const uint64_t id = next_id++;
    try {
      submit({id, s->prompt, s->max_new, s->sampling});
    } catch (const Error& e) {
      Refuse(in.peer, s->id, e.code(), e.what());
      return;
    }
    pending[id] = {in.peer, s->id};
    socket->Send(in.peer, AcceptedMsg{s->id});
  }

  bool Poll(const std::function<void(Request)>& submit, bool idle) {
    if (!stop && options.stop_requested && options.stop_requested()) {
      Log("stop requested");
      stop = true;
    }
    // Idle: wait a little for a client (the coordinator answers its workers' heartbeats between
    // polls). Busy: only take what has already arrived, so steps follow each other at once.
    std::optional<control::ControlChannel::Incoming> in =
        socket->Receive(idle && !stop ? kIdlePoll : Millis(0));
    // At most a batch per poll, so steps keep running; what is left waits for the next poll
    // (never received and then dropped).
    for (int handled = 0; in; ++handled) {
      OnMessage(*in, submit);
      if (handled + 1 == 256) break;
      in = socket->Receive(Millis(0));
    }
    return !stop;
  }

  void OnToken(uint64_t id, int32_t token, int64_t index) {
    auto it = pending.find(id);
    if (it != pending.end())
      socket->Send(it->second.peer, TokenMsg{it->second.client_id, token, index});
  }

  void OnFinished(Finished f) {
    auto it = pending.find(f.id);
    if (it == pending.end()) return;
    Log("client request " + std::to_string(it->second.client_id) + ": " +
        std::to_string(f.tokens.size()) + " tokens");
    socket->Send(it->second.peer,
                 DoneMsg{it->second.client_id, std::move(f.tokens), ErrorCode::kInternal, ""});
    ++stats.requests;
    pending.erase(it);
  }

  // Everyone still waiting learns why there will be no answer.
  void AbandonAll(ErrorCode code, const std::string& why) {
    for (const auto& [id, p] : pending) socket->Send(p.peer, DoneMsg{p.client_id, {}, code, why});
    stats.refused += static_cast<int64_t>(pending.size());
    pending.clear();
  }
};

Server::Server(Coordinator& coordinator, ServeOptions options)
    : impl_(std::make_unique<Impl>(coordinator, std::move(options))) {}

Server::~Server() = default;

const std::string& Server::address() const { return impl_->socket->address(); }

ServeStats Server::Run() {
  Impl& im = *impl_;
  Admission admission;
  admission.poll = [&](const std::function<void(Request)>& submit, bool idle) {
    return im.Poll(submit, idle);
  };
  admission.on_finished = [&](Finished f) { im.OnFinished(std::move(f)); };
  try {
    im.coordinator.Generate(
        {}, [&](uint64_t id, int32_t token, int64_t index) { im.OnToken(id, token, index); },
        &admission);
  } catch (const Error& e) {
    im.AbandonAll(e.code(), std::string("the coordinator failed: ") + e.what());
    throw;
  }
  // Generate returns only once nothing runs; anything left was never admitted.
  im.AbandonAll(ErrorCode::kUnavailable, "the coordinator is shutting down");
  return im.stats;
}

}  // namespace lockstep::coordinator
