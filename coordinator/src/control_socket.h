// The control channel's sockets: the coordinator's ROUTER and a worker's DEALER, speaking whole
// ControlMessages (one frame each, wire.h). ZeroMQ stays in control_socket.cc. A socket is used
// by one thread at a time. Closing waits at most 500 ms to flush what was sent.
//
// Flow control: ZeroMQ queues at most kPeerQueue messages per peer (each way), so a large
// shard is not copied into the coordinator's or the worker's memory all at once. What a peer's
// full queue does not take waits in the RouterSocket's backlog for that peer, in order, and
// goes out as the peer reads (every Receive hands on what it can); Send never blocks.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "messages.h"

namespace lockstep::coordinator {

using Millis = std::chrono::milliseconds;

class RouterSocket {
 public:
  // Binds `address` (ipc://PATH or tcp://HOST:PORT; port 0 or * picks a free port).
  // InvalidInput naming the address when it cannot be bound.
  explicit RouterSocket(const std::string& address);
  ~RouterSocket();
  // The address workers connect to (with the port chosen for tcp://...:0).
  const std::string& address() const { return address_; }
  // Next message, or nullopt after `timeout`. Undecodable messages are returned as the Error
  // they raise, with the sender, so the caller can name the peer.
  struct Incoming {
    std::string peer;  // ZeroMQ routing identity
    std::optional<ControlMessage> message;
    std::string error;  // set when message is empty
  };
  std::optional<Incoming> Receive(Millis timeout);
  // Sends to `peer` (or queues it behind the peer's backlog); false when the peer is not
  // connected (any more).
  bool Send(const std::string& peer, const ControlMessage& message);
  // True while messages to `peer` wait in the backlog: a producer of many messages (shard
  // chunks) makes the next one only when this is false.
  bool Backlogged(const std::string& peer) const;
  // Hands on the backlog for up to `timeout` (peers that read take theirs); true when nothing
  // is left. Before closing: what waits in the backlog is lost with the socket.
  bool Drain(Millis timeout);
  // Messages ZeroMQ buffers per peer and direction (high-water mark).
  static constexpr int kPeerQueue = 8;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

class DealerSocket {
 public:
  // Connects to `address` (the connection is made in the background). InvalidInput naming the
  // address when it is malformed.
  explicit DealerSocket(const std::string& address);
  ~DealerSocket();
  void Send(const ControlMessage& message);
  // An extra in-process channel for another thread of this worker to hand over encoded messages
  // that this socket's thread forwards (ZeroMQ sockets are single-threaded): `OutboxSender`
  // returns a sender usable from one other thread (only while this socket lives).
  class Outbox {
   public:
    virtual ~Outbox() = default;
    virtual void Post(const ControlMessage& message) = 0;
  };
  std::unique_ptr<Outbox> MakeOutbox();
  // Waits up to `timeout` for a message from the coordinator or a posted one. Posted messages
  // are forwarded to the coordinator at once; returns the first coordinator message, or nullopt.
  // Throws Error(kProtocol) for a garbled coordinator message.
  std::optional<ControlMessage> Pump(Millis timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace lockstep::coordinator
