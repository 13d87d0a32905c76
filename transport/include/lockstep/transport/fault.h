// A fault-injecting wrapper around any Endpoint, for failure tests (STYLE.md rule 4; like
// leveldb's fault-injecting Env). Faults are applied to the frames this endpoint sends, after
// framing and checksumming, i.e. where a real network would lose, delay or damage them:
//   drop        the message never reaches the peer (it reports a sequence gap: "a message was
//               lost")
//   corrupt     one payload bit flips (the peer reports a CRC32C mismatch naming the step
//               where payloads are checksummed: TransportOptions::checksums, by default tcp
//               without CURVE only; on a link that sends them unchecked the flip goes unseen)
//   delay       the message is held back: `delay_ns` added to its virtual send time (sim) and
//               `delay_real` of wall time before it leaves (real backends)
//   disconnect  after `disconnect_after` frames the link goes down; further use throws
//               kDisconnected here, and the peer reports kDisconnected (sim) or a timeout
// Which message gets which fault is decided by a seeded generator over the messages in order,
// so a failing run replays exactly. Control frames (close) are never faulted. Thread-safety: as
// Endpoint.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "lockstep/transport/endpoint.h"

namespace lockstep::transport {

struct FaultOptions {
  uint64_t seed = 1;
  double drop_probability = 0.0;     // per data message, in [0, 1]
  double corrupt_probability = 0.0;  // per data message with a payload
  double delay_probability = 0.0;    // per data message
  int64_t delay_ns = 0;              // virtual delay added to a delayed message
  Millis delay_real{0};              // wall-clock delay of a delayed message
  int64_t disconnect_after = -1;     // frames sent before the link goes down; -1: never
};

enum class FaultKind { kDrop, kCorrupt, kDelay, kDisconnect };

// One fault that was injected: which step got what.
struct FaultEvent {
  FaultKind kind;
  int64_t step;
  bool operator==(const FaultEvent&) const = default;
};

class FaultyEndpoint : public Endpoint {
 public:
  FaultyEndpoint(std::unique_ptr<Endpoint> inner, FaultOptions options);

  // The faults injected so far, in order.
  const std::vector<FaultEvent>& events() const { return events_; }

  void SendFrame(RawFrame frame, Millis timeout) override;
  std::optional<RawFrame> ReceiveFrame(Millis timeout) override;
  void Shutdown(Millis timeout) override;

 private:
  bool Roll(double probability);
  void CheckConnected() const;

  std::unique_ptr<Endpoint> inner_;
  FaultOptions options_;
  std::mt19937_64 rng_;
  std::vector<FaultEvent> events_;
  int64_t frames_sent_ = 0;
  bool disconnected_ = false;
};

// Wraps `inner`; the result is used exactly like the endpoint it wraps.
std::unique_ptr<FaultyEndpoint> InjectFaults(std::unique_ptr<Endpoint> inner, FaultOptions options);

}  // namespace lockstep::transport
