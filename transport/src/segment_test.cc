// The segmented wire format of large payloads on ipc/tcp (proto/frame.capnp, frame.h
// SegmentTag), checked at the wire: a raw ZeroMQ PAIR socket plays the peer of a Lockstep
// endpoint and sends hand-made segments, well-formed and not. Every irregularity — a corrupted,
// lost, repeated, missing, short or overlong segment, an extra one — is an error naming the link
// and the step; nothing crashes or is delivered wrong.
#include <zmq.h>

#include <cstring>
#include <future>
#include <thread>

#include "lockstep/transport/crc32c.h"
#include "lockstep/transport/frame.h"
#include "test_util.h"

namespace lockstep::transport {
namespace {

using namespace testing;

class Segments : public ::testing::TestWithParam<std::string> {
 protected:
  // Chip 0:0 (a Lockstep endpoint, the binding end) <-> chip 1:0 (the raw socket).
  void SetUp() override {
    options_ = OptionsFor(GetParam());
    transport_ = CreateTransport(options_);
    link_.a = {0, 0};
    link_.b = {1, 0};
    link_.a_to_b = out_bound_;
    auto opened = std::async(std::launch::async,
                             [&] { endpoint_ = transport_->Open(link_, link_.a, kWait); });
    ctx_ = zmq_ctx_new();
    peer_ = zmq_socket(ctx_, ZMQ_PAIR);
    const std::string address = GetParam() == "ipc"
                                    ? "ipc://" + options_.ipc_dir + "/lockstep-0.0-1.0.sock"
                                    : "tcp://127.0.0.1:" + std::to_string(options_.tcp_base_port);
    ASSERT_EQ(zmq_connect(peer_, address.c_str()), 0);
    FrameHeader hello;
    hello.kind = FrameKind::kHello;
    hello.message.src = link_.b;
    hello.message.dst = link_.a;
    SendFrames({EncodeFrameHeader(hello)});
    opened.get();                     // rethrows a failed Open
    for (int more = 1; more != 0;) {  // the endpoint's hello: header and empty payload
      zmq_msg_t answer;
      zmq_msg_init(&answer);
      ASSERT_GE(zmq_msg_recv(&answer, peer_, 0), 0);
      more = zmq_msg_more(&answer);
      zmq_msg_close(&answer);
    }
  }
  void TearDown() override {
    endpoint_.reset();
    transport_.reset();
    const int zero = 0;
    zmq_setsockopt(peer_, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(peer_);
    zmq_ctx_term(ctx_);
    if (GetParam() == "ipc") std::filesystem::remove_all(options_.ipc_dir);
  }

  // One ZeroMQ message of the given frames.
  void SendFrames(const std::vector<std::vector<std::byte>>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      ASSERT_GE(zmq_send(peer_, frames[i].data(), frames[i].size(),
                         i + 1 < frames.size() ? ZMQ_SNDMORE : 0),
                0);
    }
  }

  // A data header for `payload` at `step` (sequence 0, from the raw end).
  std::vector<std::byte> Header(int64_t step, const std::vector<std::byte>& payload) {
    FrameHeader h;
    h.message.step = step;
    h.message.src = link_.b;
    h.message.dst = link_.a;
    h.message.dtype = Dtype::kInt8;
    h.message.shape = {static_cast<int64_t>(payload.size())};
    h.payload_length = payload.size();
    h.payload_crc32c = Crc32c(payload);
    return EncodeFrameHeader(h);
  }

  static std::vector<std::byte> Slice(const std::vector<std::byte>& v, size_t from, size_t n) {
    return {v.begin() + static_cast<std::ptrdiff_t>(from),
            v.begin() + static_cast<std::ptrdiff_t>(from + n)};
  }

  static std::vector<std::byte> Pattern(size_t n) {
    std::vector<std::byte> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = std::byte(PatternByte(5, i));
    return v;
  }

  // The frames of the next ZeroMQ message the endpoint sent to the raw peer.
  std::vector<std::vector<std::byte>> ReceiveFrames() {
    std::vector<std::vector<std::byte>> frames;
    for (int more = 1; more != 0;) {
      zmq_msg_t part;
      zmq_msg_init(&part);
      if (zmq_msg_recv(&part, peer_, 0) < 0) {
        ADD_FAILURE() << "zmq_msg_recv: " << zmq_strerror(zmq_errno());
        break;
      }
      auto* d = static_cast<const std::byte*>(zmq_msg_data(&part));
      frames.emplace_back(d, d + zmq_msg_size(&part));
      more = zmq_msg_more(&part);
      zmq_msg_close(&part);
    }
    return frames;
  }

  Expect Step(int64_t step) {
    Expect e;
    e.step = step;
    return e;
  }

  TransportOptions options_;
  QueueBound out_bound_;  // what the endpoint's direction toward the raw peer is bounded by
  std::unique_ptr<Transport> transport_;
  LinkSpec link_;
  std::unique_ptr<Endpoint> endpoint_;
  void* ctx_ = nullptr;
  void* peer_ = nullptr;
};

TEST_P(Segments, AssemblesSegmentsOfUnequalSizeIntoOneTensor) {
  const std::vector<std::byte> payload = Pattern(3000);
  SendFrames({Header(4, payload), EncodeSegmentTag({0, 3, 3000}), Slice(payload, 0, 1000)});
  SendFrames({EncodeSegmentTag({1, 3, 3000}), Slice(payload, 1000, 1500)});
  SendFrames({EncodeSegmentTag({2, 3, 3000}), Slice(payload, 2500, 500)});
  Message m = endpoint_->Receive(Step(4), kWait);
  ASSERT_EQ(m.payload.size(), 3000u);
  EXPECT_EQ(std::memcmp(m.payload.bytes().data(), payload.data(), 3000), 0);
}

TEST_P(Segments, CorruptedLaterSegmentFailsTheCrcNamingLinkAndStep) {
  const std::vector<std::byte> payload = Pattern(2000);
  std::vector<std::byte> second = Slice(payload, 1000, 1000);
  second[999] ^= std::byte{0x40};
  SendFrames({Header(9, payload), EncodeSegmentTag({0, 2, 2000}), Slice(payload, 0, 1000)});
  SendFrames({EncodeSegmentTag({1, 2, 2000}), second});
  ExpectError([&] { endpoint_->Receive(Step(9), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:0 <-> chip 1:0", "step 9", "CRC32C mismatch"});
}

TEST_P(Segments, LostSegmentIsNamed) {
  const std::vector<std::byte> payload = Pattern(3000);
  SendFrames({Header(5, payload), EncodeSegmentTag({0, 3, 3000}), Slice(payload, 0, 1000)});
  SendFrames({EncodeSegmentTag({2, 3, 3000}), Slice(payload, 2000, 1000)});
  ExpectError([&] { endpoint_->Receive(Step(5), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:0 <-> chip 1:0", "step 5", "segment 1 of 3", "received segment 2 of 3",
               "lost, repeated or reordered"});
}

TEST_P(Segments, NextMessageWhereASegmentBelongsIsNamedMissing) {
  const std::vector<std::byte> payload = Pattern(2000);
  SendFrames({Header(6, payload), EncodeSegmentTag({0, 2, 2000}), Slice(payload, 0, 1000)});
  const std::vector<std::byte> small = Pattern(10);
  SendFrames({Header(7, small), small});
  ExpectError([&] { endpoint_->Receive(Step(6), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:0 <-> chip 1:0", "step 6", "segment 1 of 2", "missing"});
}

TEST_P(Segments, ShortAndOverlongSegmentsAreRefused) {
  const std::vector<std::byte> payload = Pattern(2000);
  // Two segments that hold 1800 of 2000 bytes.
  SendFrames({Header(2, payload), EncodeSegmentTag({0, 2, 2000}), Slice(payload, 0, 1000)});
  SendFrames({EncodeSegmentTag({1, 2, 2000}), Slice(payload, 1000, 800)});
  ExpectError([&] { endpoint_->Receive(Step(2), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:0 <-> chip 1:0", "step 2", "1800 of 2000", "truncated"});
}

TEST_P(Segments, SegmentBeyondThePayloadIsRefused) {
  const std::vector<std::byte> payload = Pattern(2000);
  SendFrames({Header(3, payload), EncodeSegmentTag({0, 2, 2000}), Slice(payload, 0, 1500)});
  SendFrames({EncodeSegmentTag({1, 2, 2000}), Pattern(600)});
  ExpectError(
      [&] { endpoint_->Receive(Step(3), kWait); }, ErrorCode::kProtocol,
      {"link chip 0:0 <-> chip 1:0", "step 3", "segment 1 of 2", "600 bytes", "500 of the 2000"});
}

TEST_P(Segments, ExtraSegmentAfterACompleteTensorIsRefused) {
  const std::vector<std::byte> payload = Pattern(2000);
  SendFrames({Header(0, payload), EncodeSegmentTag({0, 2, 2000}), Slice(payload, 0, 1000)});
  SendFrames({EncodeSegmentTag({1, 2, 2000}), Slice(payload, 1000, 1000)});
  SendFrames({EncodeSegmentTag({1, 2, 2000}), Slice(payload, 1000, 1000)});
  EXPECT_EQ(endpoint_->Receive(Step(0), kWait).payload.size(), 2000u);
  ExpectError([&] { endpoint_->Receive(Step(1), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:0 <-> chip 1:0", "expecting step 1", "garbled frame header"});
}

TEST_P(Segments, GarbledFirstTagIsRefused) {
  const std::vector<std::byte> payload = Pattern(2000);
  SendFrames({Header(8, payload), EncodeSegmentTag({1, 2, 2000}), Slice(payload, 0, 1000)});
  ExpectError([&] { endpoint_->Receive(Step(8), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:0 <-> chip 1:0", "step 8", "segment 1 of 2", "came first"});
}

// A Lockstep sender puts a large tensor on the wire as segments (and a small one as two frames).
TEST_P(Segments, LargeTensorLeavesTheSenderAsSegments) {
  Message m;
  m.header.step = 1;
  m.header.dtype = Dtype::kInt8;
  constexpr size_t kBytes = (size_t{3} << 20) + 5;
  m.header.shape = {static_cast<int64_t>(kBytes)};
  m.payload = Payload(Pattern(kBytes));
  endpoint_->Send(std::move(m), kWait);
  uint32_t count = 0;
  uint64_t received = 0;
  for (uint32_t k = 0; count == 0 || k < count; ++k) {
    std::vector<std::vector<std::byte>> frames = ReceiveFrames();
    ASSERT_FALSE(frames.empty());
    ASSERT_EQ(frames.size(), k == 0 ? 3u : 2u)
        << "message " << k << " of " << frames[0].size() << " bytes";
    if (k == 0) frames.erase(frames.begin());  // the header
    SegmentTag tag = DecodeSegmentTag(frames[0], "test", kBytes);
    EXPECT_EQ(tag.index, k);
    EXPECT_EQ(tag.total_bytes, kBytes);
    count = tag.count;
    received += frames[1].size();
  }
  EXPECT_GE(count, 2u);
  EXPECT_EQ(received, kBytes);
}

INSTANTIATE_TEST_SUITE_P(IpcTcp, Segments, ::testing::Values("ipc", "tcp"),
                         [](const auto& p) { return p.param; });

// A direction with a known bound (message.h QueueBound) has its receive queue sized for its
// largest tensor, so that tensor leaves whole: one two-frame message, no segments to reassemble.
class BoundedSegments : public Segments {
 protected:
  BoundedSegments() { out_bound_ = {kBytes, 1}; }
  static constexpr int64_t kBytes = (int64_t{3} << 20) + 5;
};

TEST_P(BoundedSegments, LargeTensorOfABoundedDirectionLeavesWhole) {
  Message m;
  m.header.step = 1;
  m.header.dtype = Dtype::kInt8;
  m.header.shape = {kBytes};
  m.payload = Payload(Pattern(kBytes));
  endpoint_->Send(std::move(m), kWait);
  const std::vector<std::vector<std::byte>> frames = ReceiveFrames();
  ASSERT_EQ(frames.size(), 2u);
  const FrameHeader h = DecodeFrameHeader(frames[0], "test", kBytes);
  EXPECT_EQ(h.payload_length, static_cast<uint64_t>(kBytes));
  EXPECT_EQ(frames[1], Pattern(kBytes));
}

INSTANTIATE_TEST_SUITE_P(IpcTcp, BoundedSegments, ::testing::Values("ipc", "tcp"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace lockstep::transport
