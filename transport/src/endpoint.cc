#include "lockstep/transport/endpoint.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "deadline.h"
#include "lockstep/common/error.h"
#include "lockstep/transport/crc32c.h"
#include "lockstep/transport/frame.h"

namespace lockstep::transport {
namespace {

// Error messages are built only when something fails: the happy path must not pay for strings.
// Re-throws `e` (whose message starts with `name`) with `context` in place of the name.
[[noreturn]] void Rethrow(const Error& e, const std::string& name, const std::string& context) {
  std::string what = e.what();
  if (what.rfind(name, 0) == 0) what = what.substr(name.size() + 2);
  throw Error(e.code(), context + ": " + what);
}

}  // namespace

Endpoint::Endpoint(LinkSpec link, PortRef local, uint64_t max_payload_bytes, bool checksum_payloads)
    : link_(link),
      local_(local),
      remote_(local == link.a ? link.b : link.a),
      name_(LinkName(link)),
      max_payload_bytes_(max_payload_bytes),
      max_send_bytes_(Limit(BoundFrom(link, local), max_payload_bytes)),
      max_receive_bytes_(Limit(BoundFrom(link, remote_), max_payload_bytes)),
      checksum_payloads_(checksum_payloads) {}

uint64_t Endpoint::Limit(const QueueBound& bound, uint64_t max_payload_bytes) {
  if (!bound.known()) return max_payload_bytes;
  return std::min(static_cast<uint64_t>(bound.max_message_bytes), max_payload_bytes);
}

void Endpoint::Send(Message message, Millis timeout) {
  auto context = [&] { return name_ + ": send step " + std::to_string(message.header.step); };
  if (closed_) throw Error(ErrorCode::kDisconnected, context() + ": endpoint already closed");
  uint64_t bytes = 0;
  try {
    bytes = ShapeBytes(message.header.shape, message.header.dtype, name_);
  } catch (const Error& e) {
    Rethrow(e, name_, context());
  }
  if (bytes != message.payload.size()) {
    throw InvalidInput(context() + ": payload has " + std::to_string(message.payload.size()) +
                       " bytes, shape and dtype need " + std::to_string(bytes));
  }
  if (bytes > max_send_bytes_) {
    throw InvalidInput(context() + ": payload of " + std::to_string(bytes) + " bytes exceeds " +
                       (max_send_bytes_ < max_payload_bytes_
                            ? "this direction's bound of " + std::to_string(max_send_bytes_) +
                                  " bytes (the largest message its schedule sends this way)"
                            : "max_payload_bytes " + std::to_string(max_payload_bytes_)));
  }
  FrameHeader header;
  header.kind = FrameKind::kData;
  header.message = std::move(message.header);
  header.message.src = local_;
  header.message.dst = remote_;
  header.message.sequence = next_send_sequence_;
  header.payload_length = bytes;
  header.payload_checked = checksum_payloads_;
  header.payload_crc32c = checksum_payloads_ ? Crc32c(message.payload.bytes()) : 0;
  RawFrame frame;
  frame.header = EncodeFrameHeader(header);
  frame.payload = std::move(message.payload);
  frame.send_time_ns = header.message.send_time_ns;
  SendFrame(std::move(frame), timeout);
  ++next_send_sequence_;
}

Message Endpoint::Receive(const Expect& expect, Millis timeout) {
  const uint64_t sequence = next_receive_sequence_;
  auto context = [&] {
    return name_ + ": at " + ToString(local_) + " expecting step " + std::to_string(expect.step) +
           " (tensor " + std::to_string(expect.tensor_id) + ", sequence " +
           std::to_string(sequence) + ")";
  };
  if (peer_closed_) {
    throw Error(ErrorCode::kDisconnected, context() + ": peer " + ToString(remote_) +
                                              " closed the link after " +
                                              std::to_string(next_receive_sequence_) + " messages");
  }
  std::optional<RawFrame> frame;
  try {
    frame = ReceiveFrame(timeout);
  } catch (const Error& e) {
    Rethrow(e, name_, context());
  }
  if (!frame) {
    throw Error(ErrorCode::kUnavailable, context() + ": nothing received from " +
                                             ToString(remote_) + " within " +
                                             std::to_string(timeout.count()) + " ms");
  }
  FrameHeader header;
  try {
    header = DecodeFrameHeader(frame->header, name_, max_receive_bytes_);
  } catch (const Error& e) {
    Rethrow(e, name_, context());
  }
  MessageHeader& m = header.message;
  if (m.src != remote_ || m.dst != local_) {
    throw Error(ErrorCode::kProtocol, context() + ": received a frame addressed " +
                                          ToString(m.src) + " -> " + ToString(m.dst));
  }
  if (header.kind == FrameKind::kClose) {
    peer_closed_ = true;
    AcknowledgeClose();
    throw Error(ErrorCode::kDisconnected, context() + ": peer " + ToString(remote_) +
                                              " closed the link after " +
                                              std::to_string(next_receive_sequence_) + " messages");
  }
  if (header.kind != FrameKind::kData) {
    throw Error(ErrorCode::kProtocol, context() + ": unexpected control frame");
  }
  try {
    CheckPayload(header, frame->payload.bytes(), name_, checksum_payloads_, frame->payload_crc32c);
  } catch (const Error& e) {
    Rethrow(e, name_, context());
  }
  auto got = [&] {
    return "step " + std::to_string(m.step) + " (tensor " + std::to_string(m.tensor_id) +
           ", sequence " + std::to_string(m.sequence) + ")";
  };
  if (m.sequence != next_receive_sequence_) {
    throw Error(ErrorCode::kProtocol,
                context() + ", received " + got() +
                    (m.sequence > next_receive_sequence_ ? ": a message was lost"
                                                         : ": a message was repeated"));
  }
  ++next_receive_sequence_;
  if (m.schedule_id != expect.schedule_id ||
      (!expect.any_step && (m.step != expect.step || m.tensor_id != expect.tensor_id))) {
    throw Error(ErrorCode::kProtocol, context() + ", received " + got() + " of schedule " +
                                          std::to_string(m.schedule_id) +
                                          ": not what the schedule says comes next");
  }
  if (expect.deadline_ns >= 0 && frame->arrival_time_ns > expect.deadline_ns) {
    throw Error(ErrorCode::kProtocol,
                context() + ": arrived at " + std::to_string(frame->arrival_time_ns) +
                    " ns, after the planned " + std::to_string(expect.deadline_ns) + " ns");
  }
  return Message{std::move(m), std::move(frame->payload), frame->arrival_time_ns};
}

RawFrame Endpoint::CloseFrame() const {
  FrameHeader header;
  header.kind = FrameKind::kClose;
  header.message.src = local_;
  header.message.dst = remote_;
  header.message.sequence = next_send_sequence_;
  RawFrame frame;
  frame.header = EncodeFrameHeader(header);
  return frame;
}

void Endpoint::AcknowledgeClose() {
  if (sent_close_) return;
  sent_close_ = true;
  try {
    SendFrame(CloseFrame(), Millis(0));
  } catch (const Error&) {
    // Best effort: a peer that is already gone needs no answer.
  }
}

bool Endpoint::PeerSaidGoodbye() {
  // Its marker comes after everything it sent, so look past unread frames for it.
  while (!peer_closed_) {
    std::optional<RawFrame> frame = ReceiveFrame(Millis(0));
    if (!frame) break;
    try {
      peer_closed_ =
          DecodeFrameHeader(frame->header, name_, max_payload_bytes_).kind == FrameKind::kClose;
    } catch (const Error&) {
      // A garbled leftover frame changes nothing about closing.
    }
  }
  return peer_closed_;
}

void Endpoint::Close(Millis timeout) {
  if (closed_) return;
  closed_ = true;
  // If the peer already said goodbye it may have released its end: sending our marker could
  // only block.
  try {
    if (PeerSaidGoodbye()) {
      // The peer wants nothing more from this end: answer its marker and release at once.
      AcknowledgeClose();
      Shutdown(Millis(0));
      return;
    }
  } catch (const Error&) {
    // The link is already down (the peer vanished or a fault cut it): no one to say goodbye to.
    Shutdown(Millis(0));
    return;
  }
  sent_close_ = true;
  // The marker goes in slices: when both ends close at the same moment their markers cross, and
  // a peer that has released its end takes nothing more (an inproc ZeroMQ pipe whose peer closed
  // refuses every write until the timeout, even with the peer's marker unread before it). Between
  // slices, the peer's marker means there is no one left to tell.
  Deadline deadline{timeout, std::nullopt};
  bool delivered = false;
  std::exception_ptr failure;
  for (;;) {
    const Millis left = deadline.Left();
    const Millis slice = std::min(left, kCloseSlice);
    try {
      SendFrame(CloseFrame(), slice);
      delivered = true;
      break;
    } catch (const Error& e) {
      // A peer that already shut its end down has nothing left to receive; not a failure.
      if (e.code() == ErrorCode::kDisconnected) break;
      if (e.code() != ErrorCode::kUnavailable || slice >= left) {
        failure = std::current_exception();
        break;
      }
      deadline.Start(left - slice);
    }
    bool gone = true;
    try {
      gone = PeerSaidGoodbye();
    } catch (const Error&) {
      // the link went down meanwhile: gone
    }
    if (gone) break;
  }
  // Delivered: let the marker and anything before it drain; else release at once.
  Shutdown(delivered ? timeout : Millis(0));
  if (failure) std::rethrow_exception(failure);
}

}  // namespace lockstep::transport
