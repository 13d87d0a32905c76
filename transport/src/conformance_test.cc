// The one conformance suite every transport backend runs (STYLE.md rule 10): ordering, large
// tensors, many links, interleaving, back-pressure, shutdown, corruption and wrong-step
// detection. Chips are threads here; fork_test.cc runs ipc across real processes.
#include <atomic>
#include <fstream>
#include <functional>
#include <thread>

#include "lockstep/transport/crc32c.h"
#include "lockstep/transport/curve.h"
#include "lockstep/transport/frame.h"
#include "test_util.h"

namespace lockstep::transport {
namespace {

using namespace testing;

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    options_ = OptionsFor(GetParam());
    transport_ = CreateTransport(options_);
  }
  void TearDown() override {
    if (options_.backend == "ipc") std::filesystem::remove_all(options_.ipc_dir);
  }
  static LinkSpec Link(uint32_t ca, uint32_t pa, uint32_t cb, uint32_t pb) {
    LinkSpec l;
    l.a = {ca, pa};
    l.b = {cb, pb};
    l.latency_ns = 500;
    l.bytes_per_second = 1'000'000'000;
    return l;
  }

  // Fully connects `chips` chips (chip c uses port p for peer p, as in a node), each direction
  // bounded by `bound`, and runs each as a thread: it sends `per_link` messages on every link
  // (message k of size_of(k) bytes, each sent within `send_timeout`) before it receives any, then
  // checks every message it received. Returns each chip's failure, "" if none.
  std::vector<std::string> RunFullyConnected(uint32_t chips, int per_link, QueueBound bound,
                                             const std::function<size_t(int)>& size_of,
                                             Millis send_timeout) {
    std::vector<LinkSpec> all;
    for (uint32_t i = 0; i < chips; ++i) {
      for (uint32_t j = i + 1; j < chips; ++j) {
        LinkSpec l = Link(i, j, j, i);
        l.a_to_b = l.b_to_a = bound;
        all.push_back(l);
      }
    }
    std::vector<std::future<void>> threads;
    std::vector<std::string> failures(chips);
    for (uint32_t c = 0; c < chips; ++c) {
      threads.push_back(std::async(std::launch::async, [&, c] {
        try {
          std::vector<LinkSpec> mine;
          for (const LinkSpec& l : all) {
            if (l.a.chip == c || l.b.chip == c) mine.push_back(l);
          }
          auto eps = transport_->OpenChip(c, mine, kWait);
          // Steps encode (sender, receiver, k) so a misrouted message cannot pass.
          for (int k = 0; k < per_link; ++k) {
            for (auto& e : eps) {
              const int64_t step = (e->local().chip * 100 + e->remote().chip) * 100 + k;
              e->Send(Tensor(step, k, size_of(k), step), send_timeout);
            }
          }
          for (auto& e : eps) {
            for (int k = 0; k < per_link; ++k) {
              const int64_t step = (e->remote().chip * 100 + e->local().chip) * 100 + k;
              Message m = e->Receive(Want(step, k), kWait);
              if (m.payload.size() != size_of(k) || !HasPattern(m.payload, step)) {
                throw std::runtime_error("payload of step " + std::to_string(step) + " corrupted");
              }
            }
          }
          for (auto& e : eps) e->Close(kWait);
        } catch (const std::exception& ex) {
          failures[c] = ex.what();
        }
      }));
    }
    for (auto& t : threads) t.get();
    return failures;
  }

  TransportOptions options_;
  std::unique_ptr<Transport> transport_;
};

TEST_P(Conformance, DeliversInOrderBothDirectionsWithEveryHeaderField) {
  LinkSpec link = Link(0, 1, 1, 0);
  Pair p = OpenPair(*transport_, link);
  constexpr int kCount = 40;
  // Chip b answers each message; chip a keeps two messages ahead of the answers, so both
  // directions are busy at once without exceeding the buffers.
  std::string failure;
  auto back = std::async(std::launch::async, [&] {
    try {
      for (int i = 0; i < kCount; ++i) {
        Message m = p.b->Receive(Want(i, i), kWait);
        EXPECT_EQ(m.header.src, link.a);
        EXPECT_EQ(m.header.dst, link.b);
        EXPECT_EQ(m.header.sequence, static_cast<uint64_t>(i));
        EXPECT_EQ(m.header.token_index, i);
        EXPECT_EQ(m.header.dtype, Dtype::kInt8);
        EXPECT_EQ(m.header.shape, (std::vector<int64_t>{64 + i * 13}));
        EXPECT_TRUE(HasPattern(m.payload, 1000 + i)) << "message " << i;
        p.b->Send(Tensor(i, 100 + i, 1000 + i * 97, i), kWait);
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  auto receive_answer = [&](int i) {
    Message m = p.a->Receive(Want(i, 100 + i), kWait);
    ASSERT_EQ(m.payload.size(), static_cast<size_t>(1000 + i * 97));
    ASSERT_TRUE(HasPattern(m.payload, i));
  };
  for (int i = 0; i < kCount; ++i) {
    p.a->Send(Tensor(i, i, 64 + i * 13, 1000 + i), kWait);
    if (i >= 2) receive_answer(i - 2);
  }
  receive_answer(kCount - 2);
  receive_answer(kCount - 1);
  back.get();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(p.a->sent(), static_cast<uint64_t>(kCount));
  EXPECT_EQ(p.a->received(), static_cast<uint64_t>(kCount));
}

TEST_P(Conformance, Carries64MiBTensorIntact) {
  Pair p = OpenPair(*transport_, Link(0, 0, 1, 0));
  constexpr size_t kBytes = size_t{64} << 20;
  auto sender = std::async(std::launch::async, [&] {
    p.a->Send(Tensor(7, 3, kBytes, 99), kWait);
    p.a->Send(Tensor(8, 3, 16, 98), kWait);
  });
  // Generous: filling, checksumming and moving 64 MiB took over 20 s on a 2-core machine under
  // load average 13 (and ASan); this test is about integrity, not speed.
  Message big = p.b->Receive(Want(7, 3), Millis(90000));
  EXPECT_EQ(big.payload.size(), kBytes);
  EXPECT_TRUE(HasPattern(big.payload, 99));
  EXPECT_TRUE(HasPattern(p.b->Receive(Want(8, 3), kWait).payload, 98));
  sender.get();
}

TEST_P(Conformance, ManyLinksFullyConnectedChips) {
  // 3 messages per link, below queue_capacity: all chips send before receiving.
  const std::vector<std::string> failures = RunFullyConnected(
      5, 3, {}, [](int k) { return size_t{256} + k; }, kWait);
  for (size_t c = 0; c < failures.size(); ++c) EXPECT_EQ(failures[c], "") << "chip " << c;
}

TEST_P(Conformance, InterleavedSendsAcrossLinksAndDirections) {
  // Chip 0 alternates sends on three links while each peer answers every message it receives
  // (ping-pong) on the same link: both directions are interleaved with each other.
  std::vector<LinkSpec> links = {Link(0, 0, 1, 0), Link(0, 1, 2, 0), Link(0, 2, 3, 0)};
  constexpr int kRounds = 10;
  std::vector<std::future<void>> peers;
  std::vector<std::string> failures(4);
  for (uint32_t c = 1; c <= 3; ++c) {
    peers.push_back(std::async(std::launch::async, [&, c] {
      try {
        auto e = transport_->Open(links[c - 1], {c, 0}, kWait);
        for (int r = 0; r < kRounds; ++r) {
          Message m = e->Receive(Want(r * 3 + c - 1, c), kWait);
          if (!HasPattern(m.payload, r * 10 + c)) throw std::runtime_error("bad payload");
          e->Send(Tensor(r, c, 100 + r, r * 7 + c), kWait);
        }
      } catch (const std::exception& ex) {
        failures[c] = ex.what();
      }
    }));
  }
  auto eps = transport_->OpenChip(0, links, kWait);
  for (int r = 0; r < kRounds; ++r) {
    for (uint32_t c = 1; c <= 3; ++c) {
      eps[c - 1]->Send(Tensor(r * 3 + c - 1, c, 500 + r, r * 10 + c), kWait);
    }
    for (uint32_t c = 1; c <= 3; ++c) {
      Message m = eps[c - 1]->Receive(Want(r, c), kWait);
      EXPECT_TRUE(HasPattern(m.payload, r * 7 + c));
    }
  }
  for (auto& t : peers) t.get();
  for (const auto& f : failures) EXPECT_EQ(f, "");
}

TEST_P(Conformance, SlowReceiverAppliesBackPressureAndLosesNothing) {
  Pair p = OpenPair(*transport_, Link(0, 0, 1, 0));
  constexpr size_t kBytes = 1 << 20;
  int sent = 0;
  // With nobody reading, the sender must block and time out after a bounded number of messages.
  try {
    for (; sent < 200; ++sent) p.a->Send(Tensor(sent, 0, kBytes, sent), Millis(200));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
    EXPECT_NE(std::string(e.what()).find("link chip 0:0 <-> chip 1:0"), std::string::npos);
  }
  EXPECT_LT(sent, 200) << "sender never felt back-pressure";
  EXPECT_GE(sent, 1);
  for (int i = 0; i < sent; ++i) {
    Message m = p.b->Receive(Want(i, 0), kWait);
    ASSERT_TRUE(HasPattern(m.payload, i)) << i;
  }
  // Once drained, the link works again.
  p.a->Send(Tensor(sent, 0, 8, 1), kWait);
  EXPECT_EQ(p.b->Receive(Want(sent, 0), kWait).payload.size(), 8u);
}

TEST_P(Conformance, ShutdownMidStreamDeliversEverythingThenReportsClose) {
  Pair p = OpenPair(*transport_, Link(2, 5, 9, 1));
  // The sender closes while messages are still in flight; the receiver gets all of them.
  auto sender = std::async(std::launch::async, [&] {
    for (int i = 0; i < 10; ++i) p.a->Send(Tensor(i, 4, 4096, i), kWait);
    p.a->Close(kWait);
  });
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(HasPattern(p.b->Receive(Want(i, 4), kWait).payload, i)) << i;
  }
  ExpectError([&] { p.b->Receive(Want(10, 4), kWait); }, ErrorCode::kDisconnected,
              {"link chip 2:5 <-> chip 9:1", "expecting step 10", "peer chip 2:5 closed the link",
               "after 10 messages"});
  sender.get();
  ExpectError([&] { p.a->Send(Tensor(10, 4, 8, 0), kWait); }, ErrorCode::kDisconnected,
              {"link chip 2:5 <-> chip 9:1", "closed"});
}

// Regression: the sender closes while the receiver is far behind (its ZeroMQ pipe full, the rest
// in the kernel). libzmq drops what is still in the kernel when the connection closes then, so
// the ipc/tcp backends keep a closed socket open until the peer has read up to the marker.
TEST_P(Conformance, CloseWhileReceiverIsFarBehindLosesNothing) {
  Pair p = OpenPair(*transport_, Link(0, 1, 1, 1));
  // queue_capacity (4, one for the marker) is all sim and inproc promise to hold; ipc/tcp also have
  // the kernel's socket buffers, and 20 messages overfill the receiver's pipe (high-water mark 10).
  const bool kernel = GetParam() == "ipc" || GetParam() == "tcp";
  const int kCount = kernel ? 20 : 3;
  for (int i = 0; i < kCount; ++i) p.b->Send(Tensor(i, 6, 4096, i), kWait);
  p.b->Close(kWait);
  std::this_thread::sleep_for(Millis(200));  // the connection would be gone by now
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(HasPattern(p.a->Receive(Want(i, 6), kWait).payload, i)) << i;
  }
  ExpectError([&] { p.a->Receive(Want(kCount, 6), kWait); }, ErrorCode::kDisconnected,
              {"peer chip 1:1 closed the link after " + std::to_string(kCount) + " messages"});
}

// A payload buffer that counts its releases.
class CountingOwner : public Payload::Owner {
 public:
  CountingOwner(std::vector<std::byte> bytes, std::atomic<int>& released)
      : bytes_(std::move(bytes)), released_(released) {}
  ~CountingOwner() override { ++released_; }
  std::byte* data() { return bytes_.data(); }

 private:
  std::vector<std::byte> bytes_;
  std::atomic<int>& released_;
};

// Messages still queued when both ends go away are released, not leaked (inproc hands the whole
// frame to ZeroMQ, which must free what it drops unreceived).
TEST_P(Conformance, ReleasesEveryUnreceivedTensorWhenTheEndsGoAway) {
  std::atomic<int> released{0};
  {
    Pair p = OpenPair(*transport_, Link(0, 2, 1, 2));
    for (int i = 0; i < 3; ++i) {
      Message m = Tensor(i, 8, 4096, i);
      auto owner = std::make_unique<CountingOwner>(
          std::vector<std::byte>(m.payload.bytes().begin(), m.payload.bytes().end()), released);
      std::byte* data = owner->data();
      m.payload = Payload(data, 4096, std::move(owner));
      p.a->Send(std::move(m), kWait);
    }
    EXPECT_TRUE(HasPattern(p.b->Receive(Want(0, 8), kWait).payload, 0));
    EXPECT_GE(released.load(), 1);  // the received one, once dropped
  }
  transport_.reset();  // every socket and ZeroMQ's queues are gone
  EXPECT_EQ(released.load(), 3);
}

TEST_P(Conformance, DetectsCorruptedPayloadNamingLinkAndStep) {
  Pair p = OpenPair(*transport_, Link(0, 3, 1, 3));
  // Build a correct frame at the raw layer, then flip one payload bit after the CRC was taken. A
  // checked frame is verified on every backend, default inproc included.
  Message m = Tensor(12, 5, 1000, 3);
  FrameHeader h;
  h.message = m.header;
  h.message.src = {0, 3};
  h.message.dst = {1, 3};
  h.payload_length = 1000;
  h.payload_crc32c = Crc32c(m.payload.bytes());
  m.payload.mutable_bytes()[500] ^= std::byte{0x10};
  RawFrame frame;
  frame.header = EncodeFrameHeader(h);
  frame.payload = std::move(m.payload);
  p.a->SendFrame(std::move(frame), kWait);
  ExpectError([&] { p.b->Receive(Want(12, 5), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:3 <-> chip 1:3", "step 12", "CRC32C mismatch"});
}

// Integrity by link kind (transport.h LinkChecksums), each policy on every backend (and tcp under
// CURVE): whether the endpoints checksum, what the header of a sent tensor says, and whether an
// unchecked frame is taken or refused naming the link.
TEST_P(Conformance, ChecksumsByLinkKindAndPolicy) {
  const std::string backend = options_.backend;
  struct Case {
    LinkChecksums policy;
    bool curve;
    bool checked;
  };
  std::vector<Case> cases = {{LinkChecksums::kAuto, false, backend == "tcp"},
                             {LinkChecksums::kOn, false, true},
                             {LinkChecksums::kOff, false, false}};
  if (backend == "tcp") {
    // CURVE authenticates every message: auto leaves the CRC out, on still adds it.
    cases.push_back({LinkChecksums::kAuto, true, false});
    cases.push_back({LinkChecksums::kOn, true, true});
    cases.push_back({LinkChecksums::kOff, true, false});
  }
  uint32_t port = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(LinkChecksumsName(c.policy)) + (c.curve ? " with CURVE" : ""));
    TransportOptions o = options_;
    o.checksums = c.policy;
    if (c.curve) {
      const CurveKeyPair keys = GenerateCurveKeyPair();  // one pair per run, as workers have
      o.curve = {
          true, keys.public_key, keys.secret_key, {{0, keys.public_key}, {1, keys.public_key}}};
    }
    EXPECT_EQ(ChecksumsPayloads(o), c.checked);
    std::unique_ptr<Transport> t = CreateTransport(o);
    const LinkSpec link = Link(0, port, 1, port);
    const std::string name = LinkName(link);
    ++port;
    Pair p = OpenPair(*t, link);
    EXPECT_EQ(p.a->checksums_payloads(), c.checked);
    EXPECT_EQ(p.b->checksums_payloads(), c.checked);

    Message m = Tensor(4, 2, 3000, 9);
    const uint32_t crc = Crc32c(m.payload.bytes());
    p.a->Send(std::move(m), kWait);
    std::optional<RawFrame> frame = p.b->ReceiveFrame(kWait);
    ASSERT_TRUE(frame.has_value());
    const FrameHeader sent = DecodeFrameHeader(frame->header, "test", p.b->max_payload_bytes());
    EXPECT_EQ(sent.payload_checked, c.checked);
    EXPECT_EQ(sent.payload_crc32c, c.checked ? crc : 0u);
    EXPECT_TRUE(HasPattern(frame->payload, 9));

    // An unchecked frame at the raw layer (as a peer with checksums off sends it).
    Message u = Tensor(7, 5, 1000, 3);
    FrameHeader h;
    h.message = u.header;
    h.message.src = link.a;
    h.message.dst = link.b;
    h.payload_length = 1000;
    h.payload_checked = false;
    RawFrame raw;
    raw.header = EncodeFrameHeader(h);
    raw.payload = std::move(u.payload);
    p.a->SendFrame(std::move(raw), kWait);
    if (c.checked) {
      ExpectError([&] { p.b->Receive(Want(7, 5), kWait); }, ErrorCode::kProtocol,
                  {name, "step 7", "not checksummed", "requires a CRC32C"});
    } else {
      EXPECT_TRUE(HasPattern(p.b->Receive(Want(7, 5), kWait).payload, 3));
    }
  }
}

// A direction's bound (message.h QueueBound): its largest message passes whole (ipc/tcp: not as
// segments, segment_test.cc checks the wire), a larger payload is refused by the sender
// (InvalidInput) and a larger frame by the receiver (kProtocol), each naming the link.
TEST_P(Conformance, BoundedDirectionCarriesUpToItsLargestMessage) {
  LinkSpec link = Link(0, 4, 1, 4);
  constexpr size_t kLargest = (size_t{3} << 20) + 5;  // above the size ipc/tcp would segment
  link.a_to_b = {static_cast<int64_t>(kLargest), 2};
  link.b_to_a = {1000, 1};
  Pair p = OpenPair(*transport_, link);
  EXPECT_EQ(p.a->max_send_bytes(), kLargest);
  EXPECT_EQ(p.b->max_receive_bytes(), kLargest);
  EXPECT_EQ(p.a->max_receive_bytes(), 1000u);
  auto sender = std::async(std::launch::async, [&] {
    p.a->Send(Tensor(0, 1, kLargest, 21), kWait);
    p.a->Send(Tensor(1, 1, 16, 22), kWait);
  });
  EXPECT_TRUE(HasPattern(p.b->Receive(Want(0, 1), kWait).payload, 21));
  EXPECT_TRUE(HasPattern(p.b->Receive(Want(1, 1), kWait).payload, 22));
  sender.get();
  ExpectError([&] { p.a->Send(Tensor(2, 1, kLargest + 1, 0), kWait); }, ErrorCode::kInvalidInput,
              {"link chip 0:4 <-> chip 1:4", "send step 2",
               "exceeds this direction's bound of " + std::to_string(kLargest) + " bytes"});
  // The other way, past the sender's check: the receiver refuses what its bound does not allow.
  Message big = Tensor(3, 1, 1001, 0);
  FrameHeader h;
  h.message = big.header;
  h.message.src = link.b;
  h.message.dst = link.a;
  h.payload_length = 1001;
  h.payload_crc32c = Crc32c(big.payload.bytes());
  RawFrame frame;
  frame.header = EncodeFrameHeader(h);
  frame.payload = std::move(big.payload);
  p.b->SendFrame(std::move(frame), kWait);
  ExpectError([&] { p.a->Receive(Want(3, 1), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:4 <-> chip 1:4", "expecting step 3",
               "payload length 1001 exceeds the limit of 1000 bytes"});
}

// What the OS may buffer between two ZeroMQ ends beyond their queues, in bytes: the socket
// buffers' limits of this host (tcp: tcp_wmem + tcp_rmem maxima; ipc: the core maxima).
int64_t OsSocketBufferBytes(const std::string& backend) {
  auto last = [](const char* file) {
    std::ifstream in(file);
    int64_t v = 0;
    int64_t last_v = -1;
    while (in >> v) last_v = v;
    return last_v < 0 ? int64_t{32} << 20 : last_v;
  };
  if (backend == "tcp")
    return last("/proc/sys/net/ipv4/tcp_wmem") + last("/proc/sys/net/ipv4/tcp_rmem");
  if (backend == "ipc")
    return last("/proc/sys/net/core/wmem_max") + last("/proc/sys/net/core/rmem_max");
  return 0;
}

// With nobody reading a bounded direction, the sender gets at least the promised messages through
// and then blocks within the bound in bytes: sim exactly at the promise, ZeroMQ within the marks
// of QueueDepthFor plus what the OS socket buffers hold. (Unbounded in bytes, the same 1 MiB
// tensors would queue up to queue_capacity's 8x send mark.) Nothing is lost.
TEST_P(Conformance, BoundedDirectionAppliesBackPressureWithinItsBytes) {
  constexpr size_t kBytes = size_t{1} << 20;
  LinkSpec link = Link(0, 5, 1, 5);
  link.a_to_b = {static_cast<int64_t>(kBytes), 3};
  Pair p = OpenPair(*transport_, link);
  int sent = 0;
  try {
    for (; sent < 200; ++sent) p.a->Send(Tensor(sent, 0, kBytes, sent), Millis(200));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
  }
  EXPECT_GE(sent, 3) << "Send blocked below the bound's promise";
  if (GetParam() == "sim") {
    EXPECT_EQ(sent, 3);
  } else {
    // QueueDepthFor's rule for 1 MiB tensors, 3 promised: send mark 2 * 3 + 2, receive mark 2;
    // + 2 for the messages ZeroMQ's I/O threads hold while encoding and decoding.
    const QueueDepth depth = QueueDepthFor(link.a_to_b, options_);
    EXPECT_EQ(depth.send, 8);
    EXPECT_EQ(depth.receive, 2);
    const int64_t os = OsSocketBufferBytes(options_.backend) / static_cast<int64_t>(kBytes);
    EXPECT_LE(sent, 8 + 2 + 2 + os);
  }
  for (int i = 0; i < sent; ++i) {
    ASSERT_TRUE(HasPattern(p.b->Receive(Want(i, 0), kWait).payload, i)) << i;
  }
  p.a->Send(Tensor(sent, 0, 8, 1), kWait);
  EXPECT_EQ(p.b->Receive(Want(sent, 0), kWait).payload.size(), 8u);
}

// The no-deadlock sizing (worker::MaxMessagesPerLinkDirection): a chip may send a whole step's
// messages on every link before it receives any. With each direction bounded by what it carries,
// a step of twice queue_capacity messages of mixed sizes goes through on every chip at once (sim
// would block at queue_capacity, with every chip waiting on the others, if the bound were not
// honoured).
TEST_P(Conformance, EveryChipSendsAStepBeforeReceivingWithinTheBounds) {
  constexpr size_t kLarge = size_t{256} << 10;
  const int per_link = 2 * options_.queue_capacity;
  // A broken promise blocks a send; fail in seconds rather than at the long timeout.
  const std::vector<std::string> failures = RunFullyConnected(
      4, per_link, {static_cast<int64_t>(kLarge), per_link},
      [](int k) { return k % 2 == 0 ? kLarge : size_t{4096} + k; }, Millis(5000));
  for (size_t c = 0; c < failures.size(); ++c) EXPECT_EQ(failures[c], "") << "chip " << c;
}

TEST_P(Conformance, RejectsGarbledHeaderWithoutCrashing) {
  Pair p = OpenPair(*transport_, Link(0, 3, 1, 3));
  RawFrame frame;
  frame.header.assign(40, std::byte{0xAB});
  p.a->SendFrame(std::move(frame), kWait);
  ExpectError([&] { p.b->Receive(Want(0, 0), kWait); }, ErrorCode::kProtocol,
              {"link chip 0:3 <-> chip 1:3", "expecting step 0", "garbled frame header"});
}

TEST_P(Conformance, DetectsWrongStepNamingExpectedAndReceived) {
  Pair p = OpenPair(*transport_, Link(4, 1, 6, 2));
  p.a->Send(Tensor(5, 2, 32, 0), kWait);
  ExpectError([&] { p.b->Receive(Want(4, 2), kWait); }, ErrorCode::kProtocol,
              {"link chip 4:1 <-> chip 6:2", "expecting step 4", "received step 5"});
}

// A receiver that holds messages until their instruction takes whatever step comes next of its
// schedule (Expect::any_step), every header field intact; another schedule and a lost message
// are still refused.
TEST_P(Conformance, AnyStepTakesTheNextMessageOfTheScheduleInOrder) {
  Pair p = OpenPair(*transport_, Link(4, 1, 6, 2));
  Expect any = Want(0, 0);
  any.any_step = true;
  Message later = Tensor(9, 7, 16, 9);
  later.header.src_rank = 3;
  later.header.ahead = 0xABCDEF0123456789;
  p.a->Send(std::move(later), kWait);
  p.a->Send(Tensor(8, 5, 16, 8), kWait);
  Message m = p.b->Receive(any, kWait);
  EXPECT_EQ(m.header.step, 9);
  EXPECT_EQ(m.header.tensor_id, 7u);
  EXPECT_EQ(m.header.src_rank, 3);
  EXPECT_EQ(m.header.ahead, 0xABCDEF0123456789u);
  EXPECT_TRUE(HasPattern(m.payload, 9));
  EXPECT_EQ(p.b->Receive(any, kWait).header.step, 8);
  Message other = Tensor(8, 5, 16, 8);
  other.header.schedule_id = 2;
  p.a->Send(std::move(other), kWait);
  ExpectError([&] { p.b->Receive(any, kWait); }, ErrorCode::kProtocol,
              {"link chip 4:1 <-> chip 6:2", "received step 8", "of schedule 2"});
}

TEST_P(Conformance, RejectsPayloadThatDoesNotMatchShape) {
  Pair p = OpenPair(*transport_, Link(0, 0, 1, 0));
  Message m = Tensor(0, 0, 10, 0);
  m.header.shape = {11};
  ExpectError([&] { p.a->Send(std::move(m), kWait); }, ErrorCode::kInvalidInput,
              {"link chip 0:0 <-> chip 1:0", "send step 0", "payload has 10 bytes"});
}

TEST_P(Conformance, NamesPeerThatNeverConnects) {
  LinkSpec link = Link(3, 7, 12, 7);
  for (PortRef local : {link.a, link.b}) {
    ExpectError([&] { transport_->Open(link, local, Millis(150)); }, ErrorCode::kUnavailable,
                {"link chip 3:7 <-> chip 12:7: peer chip " +
                 std::to_string(local == link.a ? 12 : 3) + " did not connect within 150 ms"});
  }
}

TEST_P(Conformance, ReceiveTimesOutWhenNothingComes) {
  Pair p = OpenPair(*transport_, Link(0, 0, 1, 0));
  ExpectError([&] { p.b->Receive(Want(3, 0), Millis(50)); }, ErrorCode::kUnavailable,
              {"link chip 0:0 <-> chip 1:0", "expecting step 3", "nothing received from chip 0:0"});
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance,
                         ::testing::Values("sim", "inproc", "inprocOn", "ipc", "tcp"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace lockstep::transport
