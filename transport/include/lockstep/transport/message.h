// The values the transport moves: the two ends of a link, a tensor payload, and a message.
//
// A link joins two (chip, port) ends; the transport knows nothing else about the topology (it
// does not depend on topology/). A `Payload` owns its bytes and is move-only, so a tensor is
// handed from the sender to the wire and from the wire to the receiver without copies: the ZeroMQ
// backends give the buffer to the socket and free it through a callback when the socket is done,
// and hand received frames to the caller in place. All types here are plain values; a `Payload`
// may be moved between threads but not shared.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lockstep/common/dtype.h"

namespace lockstep::transport {

// One end of a link: a port of a chip.
struct PortRef {
  uint32_t chip = 0;
  uint32_t port = 0;
  auto operator<=>(const PortRef&) const = default;
};

// "chip 3:7".
std::string ToString(PortRef end);

// What the schedule sends over one direction of a link, which bounds that direction's queues in
// bytes (schedule::LinkLoads computes it from a compiled schedule). Known when
// `max_message_bytes` >= 0: the sender refuses a larger payload (InvalidInput) and the receiver
// a larger frame (kProtocol); Send never blocks while fewer than max(messages, 1) messages are
// unreceived that way; and the receiving end queues at most ReceiveQueueMessages(bound) messages,
// so never more than that many times max_message_bytes (transport.h, QueueDepthFor). Tensors then
// travel whole, never as segments. Unknown (-1, the default): any payload up to
// TransportOptions::max_payload_bytes, queue_capacity messages deep, large ones in segments on
// ipc/tcp (a bound in messages only).
struct QueueBound {
  int64_t max_message_bytes = -1;  // the largest payload sent this way; -1: not known
  int64_t messages = 0;            // the most messages sent this way before the receiver reads
  bool known() const { return max_message_bytes >= 0; }
  friend bool operator==(const QueueBound&, const QueueBound&) = default;
};

// A direct, full-duplex link between two chips. `latency_ns` and `bytes_per_second` are used by
// the `sim` backend only (the ZeroMQ backends take whatever the real network gives).
struct LinkSpec {
  PortRef a;
  PortRef b;
  int64_t latency_ns = 0;                     // fixed one-way latency of the link
  int64_t bytes_per_second = 12'900'000'000;  // per direction (lpu-v1: ~12.9 GB/s)
  QueueBound a_to_b = {};                     // what the schedule sends from a to b
  QueueBound b_to_a = {};                     // ... and from b to a
};

// "link chip 3:7 <-> chip 12:7" (ends in the order given), the prefix of every transport error.
std::string LinkName(const LinkSpec& link);

// The bound of the direction that leaves `from` (an end of `link`): a_to_b when from == link.a.
const QueueBound& BoundFrom(const LinkSpec& link, PortRef from);

// Owned, move-only bytes of a tensor. Either a heap buffer (the usual case for a sender) or
// memory owned by something else (a received ZeroMQ frame) released through `Owner`.
class Payload {
 public:
  // Whatever keeps adopted memory alive; destroyed when the payload is.
  class Owner {
   public:
    virtual ~Owner() = default;
  };

  Payload() = default;
  explicit Payload(size_t size);  // zero-filled
  // `size` bytes the caller will overwrite (no zero-fill pass over large tensors).
  static Payload Uninitialized(size_t size);
  explicit Payload(std::vector<std::byte> bytes);
  // Adopts `size` bytes at `data`, kept alive by `owner`.
  Payload(std::byte* data, size_t size, std::unique_ptr<Owner> owner);

  Payload(Payload&&) noexcept = default;
  Payload& operator=(Payload&&) noexcept = default;
  Payload(const Payload&) = delete;
  Payload& operator=(const Payload&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::span<std::byte> mutable_bytes() { return {data_, size_}; }
  std::byte* data() { return data_; }
  size_t size() const { return size_; }

  // Gives up ownership: returns the owner (never null when size() > 0) and leaves this empty.
  // The ZeroMQ backends use it to hand the buffer to a socket without copying.
  std::unique_ptr<Owner> Release();

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  std::unique_ptr<Owner> owner_;
};

// Everything about a message except its bytes. `src`, `dst` and `sequence` are stamped by the
// sending endpoint; the caller fills the rest.
struct MessageHeader {
  uint64_t schedule_id = 0;    // the compiled schedule this transfer belongs to
  int64_t step = 0;            // the schedule step of the transfer
  PortRef src;                 // sending end (stamped)
  PortRef dst;                 // receiving end (stamped)
  uint64_t tensor_id = 0;      // which tensor of the plan
  uint64_t sequence = 0;       // per link direction: 0, 1, 2, ... (stamped)
  int64_t token_index = -1;    // token position, -1 when not per token
  Dtype dtype = Dtype::kFp32;  // element type of the payload
  std::vector<int64_t> shape;  // product(shape) * DtypeBytes(dtype) == payload size
  int64_t send_time_ns = 0;    // sim: virtual time the sender issues the transfer
  // The rank, in its tensor-parallel group, of the chip that produced the tensor; a chip that
  // forwards a message passes it on unchanged, so a collective's receiver knows whose partial it
  // holds whatever route it took. -1: not a collective's tensor.
  int32_t src_rank = -1;
  // What the sending runtime announces of a later step (worker: the kind of step the schedule runs
  // next, so that chips without a control message learn it from their data). The transport
  // carries it unread.
  uint64_t ahead = 0;
};

struct Message {
  MessageHeader header;
  Payload payload;
  // sim: virtual time the last byte arrived (send start + size / bandwidth + latency, one
  // transfer at a time per direction). -1 on the real-time backends.
  int64_t arrival_time_ns = -1;
};

}  // namespace lockstep::transport
