// An `Endpoint` is one chip's end of one direct link: it sends tensors to the chip at the other
// end and receives the tensors the schedule says come next from it.
//
// Delivery is scheduled and in order. The receiver does not take "whatever arrived": it asks
// for the message its program expects (`Expect`: schedule, step, tensor) and anything else —
// another step, a gap in the per-direction sequence (a lost message), a corrupted payload, a peer
// that closed — is an Error naming the link and the expected and received step. Buffers are
// bounded per direction: in bytes when the link's QueueBound for it is known (message.h; larger
// payloads are refused), else in messages (`queue_capacity`); a sender blocks when its direction
// is full and fails with kUnavailable if that lasts longer than its timeout. `Close` sends an
// end-of-stream marker after everything sent before it; the receiver gets every message, then
// kDisconnected.
//
// Thread-safety: an Endpoint is used by one thread at a time (like a socket). Different
// endpoints may be used from different threads concurrently.
//
// Checksums, by link kind (TransportOptions::checksums): an endpoint that checksums puts the
// payload's CRC32C in the header and requires it of every frame it receives: an unchecked frame
// is refused as kProtocol naming the link and step. One that does not (auto on sim, inproc, ipc
// and CURVE tcp; off) sends its payloads unchecked — the header says so — and costs what raw
// ZeroMQ costs plus the header. Whatever its own setting, an endpoint verifies every checked
// frame it receives: a wrong CRC is always refused.
//
// Layers: `Send`/`Receive`/`Close` (this class, not virtual) do framing, checksums and matching;
// a backend implements only the raw frame layer below (`SendFrame`/`ReceiveFrame`/`Shutdown`), so
// wrappers such as the fault injector (fault.h) can sit between the two.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/transport/message.h"

namespace lockstep::transport {

using Millis = std::chrono::milliseconds;

// What the receiver's program says comes next on this link.
struct Expect {
  uint64_t schedule_id = 0;
  int64_t step = 0;
  uint64_t tensor_id = 0;
  // sim: the planned latest arrival in virtual time; a later arrival is an Error. -1: no check.
  int64_t deadline_ns = -1;
  // Accept whatever step and tensor of `schedule_id` comes next (the caller matches it: a runtime
  // whose peers may send a later step's message before an earlier one on this link holds it
  // until its instruction). Loss, reordering, framing and the schedule are still checked.
  bool any_step = false;
};

// One message as the backends move it: encoded header frame + payload frame.
struct RawFrame {
  std::vector<std::byte> header;
  Payload payload;
  int64_t send_time_ns = 0;      // sim: virtual time the transfer is issued
  int64_t arrival_time_ns = -1;  // sim: virtual arrival time, set by the backend on receive
  // Receive: the CRC32C of `payload` as the backend computed it while assembling the payload from
  // segments (ZeroMQ ipc/tcp, large tensors), so Receive compares it with the header's instead of
  // reading the bytes again. A layer that changes `payload` after the backend must reset it.
  std::optional<uint32_t> payload_crc32c;
};

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  const LinkSpec& link() const { return link_; }
  PortRef local() const { return local_; }
  PortRef remote() const { return remote_; }
  // "link chip 0:1 <-> chip 1:1", the prefix of this endpoint's errors.
  const std::string& name() const { return name_; }

  // Sends `message` to the remote end: stamps src, dst and the next sequence number, checks that
  // the payload matches shape and dtype (InvalidInput otherwise), computes the CRC32C and hands the
  // payload to the backend without copying it. Blocks while the link's buffer is full; throws
  // kUnavailable after `timeout`, kDisconnected after Close.
  void Send(Message message, Millis timeout);

  // Waits up to `timeout` for the next message and returns it if it is the one `expect` names.
  // Throws kUnavailable on timeout, kDisconnected when the peer closed the link, kProtocol for a
  // garbled frame, a CRC mismatch, a lost or reordered message, or a message other than expected.
  Message Receive(const Expect& expect, Millis timeout);

  // Sends the end-of-stream marker and releases the link; messages sent before are still
  // delivered: Close does not block on the peer, but the ZeroMQ ipc/tcp backends keep the socket
  // open in the background until the peer has read up to the marker (it answers with its own
  // marker, which Receive and Close send as soon as they meet the peer's), disconnects, or
  // `timeout` passes. Frames from the peer not received yet are discarded. Idempotent.
  // Destroying an endpoint without Close releases it at once, dropping whatever is still queued.
  void Close(Millis timeout);

  // Largest payload this endpoint sends or accepts (TransportOptions::max_payload_bytes), and
  // what a known bound of each direction narrows it to (message.h QueueBound).
  uint64_t max_payload_bytes() const { return max_payload_bytes_; }
  uint64_t max_send_bytes() const { return max_send_bytes_; }
  uint64_t max_receive_bytes() const { return max_receive_bytes_; }

  // Whether Send checksums payloads and Receive requires checked frames (see above).
  bool checksums_payloads() const { return checksum_payloads_; }

  // Messages sent / received so far on this endpoint.
  uint64_t sent() const { return next_send_sequence_; }
  uint64_t received() const { return next_receive_sequence_; }

  // --- raw frame layer, implemented by backends and wrappers ---
  // Moves one frame to the peer; blocks while the link direction is full (kUnavailable after
  // `timeout`).
  virtual void SendFrame(RawFrame frame, Millis timeout) = 0;
  // Next frame from the peer, or nullopt after `timeout`.
  virtual std::optional<RawFrame> ReceiveFrame(Millis timeout) = 0;
  // Releases the backend's resources after flushing queued frames for up to `timeout`.
  virtual void Shutdown(Millis timeout) = 0;

 protected:
  Endpoint(LinkSpec link, PortRef local, uint64_t max_payload_bytes, bool checksum_payloads = true);

 private:
  LinkSpec link_;
  PortRef local_;
  PortRef remote_;
  std::string name_;
  static uint64_t Limit(const QueueBound& bound, uint64_t max_payload_bytes);
  uint64_t max_payload_bytes_;
  uint64_t max_send_bytes_;
  uint64_t max_receive_bytes_;
  bool checksum_payloads_;
  uint64_t next_send_sequence_ = 0;
  uint64_t next_receive_sequence_ = 0;
  RawFrame CloseFrame() const;
  // Answers the peer's end-of-stream marker with ours (once; best effort, never blocks).
  void AcknowledgeClose();
  // Reads (and drops) the peer's unread frames up to its end-of-stream marker; true once that
  // came. Throws what ReceiveFrame throws when the link is down.
  bool PeerSaidGoodbye();
  // How long Close's marker waits for room before it looks again for the peer's marker.
  static constexpr Millis kCloseSlice{20};

  bool closed_ = false;
  bool peer_closed_ = false;
  bool sent_close_ = false;
};

}  // namespace lockstep::transport
