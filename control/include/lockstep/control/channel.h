// The control channel: whole ControlMessages (messages.h) between the coordinator and its workers,
// or between a serving coordinator and its clients, one encoded frame each (codec.h). Two ends:
//   * ControlChannel — the listening end (the coordinator's): receives from any peer, sends to one;
//   * ControlConnection — a connecting end (a worker's, a client's): talks to the listener.
// Implementations, chosen by the address:
//   * ZeroMQ, ipc://PATH or tcp://HOST:PORT (port 0 or *: any free port): ROUTER and DEALER
//     sockets; between processes and hosts. ZeroMQ waits in real time, so these ends refuse a
//     manual clock.
//   * In memory, mem://NAME on an InMemoryNetwork: threads of one process, and tests. Frames are
//     encoded and decoded exactly as on ZeroMQ, so the codec runs on every path. On a ManualClock
//     time moves only when every end of the network waits: then the clock jumps to the earliest
//     deadline among the waiting ends (as a discrete-event simulation would), so a 3-second
//     timeout passes at once, and deterministically. Parties of such a test must therefore act
//     only on messages and on their own timeouts (scripted peers), and close an end they are done
//     with (an end nobody waits on holds time still); a worker with a compute thread needs the
//     real clock.
//
// The contract both keep (control/src/channel_conformance_test.cc runs it against both):
//   * Each direction between two ends delivers in send order; nothing is lost while both live.
//   * Flow control: at most kPeerQueue messages wait for a peer that does not read (a shard is
//     never copied into memory all at once). What a peer's queue does not take waits in the
//     listener's backlog for that peer, in order, and moves on as it reads; Backlogged(peer) is
//     true meanwhile. Send never blocks.
//   * Send to a peer that is gone, or never was, returns false.
//   * Receive(timeout) returns nullopt once `timeout` has passed on the end's clock; a frame that
//     does not decode comes back as the error it raised, with its sender, so the caller can name
//     the peer (ControlChannel), or throws Error(kProtocol) (ControlConnection).
//   * A connection's Outbox lets a second thread of its owner hand over messages, sent in order.
//
// Thread-safety: an end is used by one thread at a time (an Outbox by one other thread).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "lockstep/control/clock.h"
#include "lockstep/control/messages.h"

namespace lockstep::control {

class InMemoryNetwork;

struct ChannelOptions {
  // The clock waits and deadlines are measured on; null: RealClock(). mem:// ends always use
  // their network's clock (give the same one here, or none).
  Clock* clock = nullptr;
  // Where mem:// addresses live; required for them, unused otherwise.
  InMemoryNetwork* network = nullptr;
};

// The clock an end made with `options` waits on: options.clock, else (mem://) the network's,
// else RealClock(). The end's owner measures its own deadlines on the same one.
Clock& ChannelClock(const ChannelOptions& options);

// Messages a listener lets wait for one peer before it keeps the rest in its backlog.
inline constexpr int kPeerQueue = 8;

class ControlChannel {
 public:
  virtual ~ControlChannel() = default;
  // The address peers connect to (with the port chosen for tcp://...:0).
  virtual const std::string& address() const = 0;
  struct Incoming {
    std::string peer;  // the sender, as Send wants it
    std::optional<ControlMessage> message;
    std::string error;  // why `message` is empty: the frame did not decode
  };
  // The next message, or nullopt after `timeout`.
  virtual std::optional<Incoming> Receive(Millis timeout) = 0;
  // Sends to `peer` (or queues it behind the peer's backlog); false when the peer is not
  // connected (any more).
  virtual bool Send(const std::string& peer, const ControlMessage& message) = 0;
  // True while messages to `peer` wait in the backlog: a producer of many messages (shard chunks)
  // makes the next one only when this is false.
  virtual bool Backlogged(const std::string& peer) const = 0;
  // Hands on the backlog for up to `timeout`; true when nothing that closing would lose is left.
  // Call before closing (a shutdown to every peer).
  virtual bool Drain(Millis timeout) = 0;
};

class ControlConnection {
 public:
  virtual ~ControlConnection() = default;
  virtual void Send(const ControlMessage& message) = 0;
  // A sender for one other thread of this end's owner (e.g. a worker's compute thread): what it
  // posts goes to the listener in order. Valid while this end lives.
  class Outbox {
   public:
    virtual ~Outbox() = default;
    virtual void Post(const ControlMessage& message) = 0;
  };
  virtual std::unique_ptr<Outbox> MakeOutbox() = 0;
  // Waits up to `timeout` for a message from the listener (posted messages go out meanwhile);
  // nullopt after the timeout. Throws Error(kProtocol) for a frame that does not decode.
  virtual std::optional<ControlMessage> Receive(Millis timeout) = 0;
};

// Binds `address`. InvalidInput naming the address when it is malformed, taken or unknown.
std::unique_ptr<ControlChannel> Listen(const std::string& address,
                                       const ChannelOptions& options = {});
// Connects to `address` (in the background: a listener that is not there yet is not an error;
// messages wait for it, or are lost with a mem:// one that never comes). InvalidInput naming the
// address when it is malformed.
std::unique_ptr<ControlConnection> Connect(const std::string& address,
                                           const ChannelOptions& options = {});

// The medium of mem:// addresses: every end of one in-process run (or test). Must outlive its
// ends; its clock must outlive it.
class InMemoryNetwork {
 public:
  explicit InMemoryNetwork(Clock& clock = RealClock());
  ~InMemoryNetwork();
  InMemoryNetwork(const InMemoryNetwork&) = delete;
  InMemoryNetwork& operator=(const InMemoryNetwork&) = delete;
  Clock& clock() const;

  struct State;  // shared with the ends (in_memory_channel.cc)

 private:
  std::shared_ptr<State> state_;
  friend std::unique_ptr<ControlChannel> Listen(const std::string&, const ChannelOptions&);
  friend std::unique_ptr<ControlConnection> Connect(const std::string&, const ChannelOptions&);
};

}  // namespace lockstep::control
