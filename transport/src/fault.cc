#include "lockstep/transport/fault.h"

#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/transport/frame.h"

namespace lockstep::transport {

FaultyEndpoint::FaultyEndpoint(std::unique_ptr<Endpoint> inner, FaultOptions options)
    : Endpoint(inner->link(), inner->local(), inner->max_payload_bytes(),
               inner->checksums_payloads()),
      inner_(std::move(inner)),
      options_(options),
      rng_(options.seed) {}

bool FaultyEndpoint::Roll(double probability) {
  // Top 53 bits as a fraction in [0, 1): the same on every standard library, unlike
  // std::uniform_real_distribution.
  double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  return u < probability;
}

void FaultyEndpoint::CheckConnected() const {
  if (disconnected_) {
    throw Error(ErrorCode::kDisconnected, name() + ": link is down (injected disconnect after " +
                                              std::to_string(options_.disconnect_after) +
                                              " frames)");
  }
}

void FaultyEndpoint::SendFrame(RawFrame frame, Millis timeout) {
  CheckConnected();
  FrameHeader header = DecodeFrameHeader(frame.header, name(), max_payload_bytes());
  const int64_t step = header.message.step;
  if (options_.disconnect_after >= 0 && frames_sent_ >= options_.disconnect_after) {
    disconnected_ = true;
    events_.push_back({FaultKind::kDisconnect, step});
    inner_->Shutdown(Millis(0));
    CheckConnected();
  }
  ++frames_sent_;
  if (header.kind == FrameKind::kData) {
    // Always draw all three so one fault's probability does not shift the others' sequence.
    bool drop = Roll(options_.drop_probability);
    bool corrupt = Roll(options_.corrupt_probability);
    bool delay = Roll(options_.delay_probability);
    uint64_t where = rng_();
    if (drop) {
      events_.push_back({FaultKind::kDrop, step});
      return;
    }
    if (corrupt && frame.payload.size() > 0) {
      events_.push_back({FaultKind::kCorrupt, step});
      size_t bit = where % (frame.payload.size() * 8);
      frame.payload.mutable_bytes()[bit / 8] ^= std::byte(1u << (bit % 8));
    }
    if (delay) {
      events_.push_back({FaultKind::kDelay, step});
      frame.send_time_ns += options_.delay_ns;
      if (options_.delay_real.count() > 0) std::this_thread::sleep_for(options_.delay_real);
    }
  }
  inner_->SendFrame(std::move(frame), timeout);
}

std::optional<RawFrame> FaultyEndpoint::ReceiveFrame(Millis timeout) {
  CheckConnected();
  return inner_->ReceiveFrame(timeout);
}

void FaultyEndpoint::Shutdown(Millis timeout) {
  if (!disconnected_) inner_->Shutdown(timeout);
}

std::unique_ptr<FaultyEndpoint> InjectFaults(std::unique_ptr<Endpoint> inner,
                                             FaultOptions options) {
  return std::make_unique<FaultyEndpoint>(std::move(inner), options);
}

}  // namespace lockstep::transport
