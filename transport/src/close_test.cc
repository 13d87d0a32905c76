// Endpoint::Close when both ends close at the same moment: the markers cross, and a peer that has
// released its end takes nothing more (an inproc ZeroMQ pipe then refuses every write until the
// timeout). Close must notice the peer's marker and return, not wait out its timeout and fail.
#include <gtest/gtest.h>

#include <deque>
#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/transport/endpoint.h"
#include "lockstep/transport/frame.h"

namespace lockstep::transport {
namespace {

// A link end whose peer has closed: nothing it sends is taken (kUnavailable after the timeout),
// and the peer's frames (`inbox`) become readable only after `visible_after` sends were refused,
// as when the peer's marker arrives just after this end looked for it.
class ClosedPeerEndpoint : public Endpoint {
 public:
  ClosedPeerEndpoint(std::deque<RawFrame> inbox, int visible_after)
      : Endpoint(LinkSpec{{0, 1}, {1, 0}}, {0, 1}, 1 << 20),
        inbox_(std::move(inbox)),
        visible_after_(visible_after) {}

  void SendFrame(RawFrame, Millis timeout) override {
    ++refused;
    waited += timeout;
    std::this_thread::sleep_for(timeout);  // as a backend waits for room
    throw Error(ErrorCode::kUnavailable, name() + ": did not take the message");
  }
  std::optional<RawFrame> ReceiveFrame(Millis) override {
    if (refused < visible_after_ || inbox_.empty()) return std::nullopt;
    RawFrame f = std::move(inbox_.front());
    inbox_.pop_front();
    return f;
  }
  void Shutdown(Millis) override { ++shutdowns; }

  int refused = 0;
  int shutdowns = 0;
  Millis waited{0};

 private:
  std::deque<RawFrame> inbox_;
  int visible_after_;
};

RawFrame Frame(FrameKind kind) {
  FrameHeader h;
  h.kind = kind;
  h.message.src = {1, 0};
  h.message.dst = {0, 1};
  RawFrame f;
  f.header = EncodeFrameHeader(h);
  return f;
}

TEST(Close, APeerMarkerThatCrossesOursEndsTheCloseWithoutWaitingItsTimeout) {
  std::deque<RawFrame> inbox;
  inbox.push_back(Frame(FrameKind::kData));  // unread data before the marker is dropped
  inbox.push_back(Frame(FrameKind::kClose));
  ClosedPeerEndpoint e(std::move(inbox), 2);
  e.Close(Millis(60000));               // returns, does not throw
  EXPECT_EQ(e.refused, 2);              // two refused slices, then the marker was there
  EXPECT_LE(e.waited, 2 * Millis(20));  // slices, not the minute
  EXPECT_EQ(e.shutdowns, 1);
  e.Close(Millis(60000));  // idempotent
  EXPECT_EQ(e.refused, 2);
}

TEST(Close, APeerThatNeverAnswersStillFailsAfterTheTimeout) {
  ClosedPeerEndpoint e({}, 0);
  try {
    e.Close(Millis(70));
    ADD_FAILURE() << "a marker nobody took was reported as sent";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::kUnavailable);
  }
  EXPECT_GE(e.refused, 2);  // slices of at most 20 ms
  EXPECT_EQ(e.shutdowns, 1);
}

}  // namespace
}  // namespace lockstep::transport
