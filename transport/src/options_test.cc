// The transport's options and the rules derived from them: the link checksum policy by link
// kind, the queue depths of a bounded direction, and the refusal of bounds a link cannot carry.
#include "lockstep/transport/transport.h"
#include "test_util.h"

namespace lockstep::transport {
namespace {

using namespace testing;

TEST(LinkChecksums, NamesParseBackAndOthersAreRefused) {
  for (LinkChecksums p : {LinkChecksums::kAuto, LinkChecksums::kOn, LinkChecksums::kOff}) {
    EXPECT_EQ(ParseLinkChecksums(LinkChecksumsName(p)), p);
  }
  ExpectError([] { ParseLinkChecksums("yes"); }, ErrorCode::kInvalidInput,
              {"link checksums 'yes'", "valid: auto, on, off"});
}

// DESIGN.md: integrity where corruption can happen. auto checks tcp only, and not under CURVE.
TEST(LinkChecksums, AutoChecksOnlyTcpWithoutCurve) {
  for (const char* backend : {"sim", "inproc", "ipc", "tcp"}) {
    for (bool curve : {false, true}) {
      if (curve && std::string(backend) != "tcp") continue;
      SCOPED_TRACE(std::string(backend) + (curve ? " CURVE" : ""));
      TransportOptions o;
      o.backend = backend;
      o.curve.enabled = curve;
      EXPECT_EQ(ChecksumsPayloads(o), std::string(backend) == "tcp" && !curve);
      o.checksums = LinkChecksums::kOn;
      EXPECT_TRUE(ChecksumsPayloads(o));
      o.checksums = LinkChecksums::kOff;
      EXPECT_FALSE(ChecksumsPayloads(o));
    }
  }
}

TEST(QueueDepthFor, SizesBoundedDirectionsFromTheirLargestMessage) {
  TransportOptions o;
  o.backend = "ipc";
  o.queue_capacity = 4;
  // Small tensors: queues of kQueueFloorBytes (1 MiB / 4 KiB = 256 messages).
  EXPECT_EQ(QueueDepthFor({4096, 3}, o).send, 256);
  EXPECT_EQ(QueueDepthFor({4096, 3}, o).receive, 256);
  // Large ones: the promise doubled (+ 2) to send, two to receive.
  EXPECT_EQ(QueueDepthFor({16 << 20, 4}, o).send, 10);
  EXPECT_EQ(QueueDepthFor({16 << 20, 4}, o).receive, 2);
  // No messages promised still lets one through; empty payloads are capped.
  EXPECT_EQ(QueueDepthFor({int64_t{1} << 30, 0}, o).send, 4);
  EXPECT_EQ(QueueDepthFor({0, 1}, o).receive, 4096);
  // Unknown: queue_capacity, with room for segments on ipc/tcp.
  EXPECT_EQ(QueueDepthFor({}, o).send, 80);
  EXPECT_EQ(QueueDepthFor({}, o).receive, 10);
  o.backend = "inproc";
  EXPECT_EQ(QueueDepthFor({}, o).send, 10);
}

TEST(QueueBound, ABoundLargerThanMaxPayloadOrWithNegativeMessagesIsRefusedNamingTheLink) {
  for (const char* backend : {"sim", "inproc"}) {
    TransportOptions o = OptionsFor(backend);
    o.max_payload_bytes = 1000;
    auto t = CreateTransport(o);
    LinkSpec l;
    l.a = {0, 1};
    l.b = {1, 1};
    l.b_to_a = {1001, 1};
    ExpectError([&] { t->Open(l, l.a, Millis(100)); }, ErrorCode::kInvalidInput,
                {"link chip 0:1 <-> chip 1:1", "bound chip 1:1 -> chip 0:1",
                 "1001 bytes exceeds max_payload_bytes 1000"});
    l.b_to_a = {};
    l.a_to_b = {10, -1};
    ExpectError([&] { t->Open(l, l.b, Millis(100)); }, ErrorCode::kInvalidInput,
                {"bound chip 0:1 -> chip 1:1", "-1 messages"});
  }
}

TEST(QueueBound, SimEndsThatDisagreeOnABoundAreRefused) {
  auto t = CreateTransport(OptionsFor("sim"));
  LinkSpec l;
  l.a = {0, 1};
  l.b = {1, 1};
  l.a_to_b = {4096, 2};
  LinkSpec other = l;
  other.a_to_b = {8192, 2};
  // Whichever end registers second is refused; the first then waits for a peer in vain.
  auto open = [&](const LinkSpec& spec, PortRef end) {
    try {
      t->Open(spec, end, Millis(300));
    } catch (const Error& e) {
      return std::pair{e.code(), std::string(e.what())};
    }
    return std::pair{ErrorCode::kInternal, std::string("opened")};
  };
  auto first = std::async(std::launch::async, [&] { return open(l, l.a); });
  auto [code, what] = open(other, other.b);
  auto [first_code, first_what] = first.get();
  if (code != ErrorCode::kInvalidInput) {
    std::swap(code, first_code);
    std::swap(what, first_what);
  }
  EXPECT_EQ(code, ErrorCode::kInvalidInput) << what;
  EXPECT_NE(what.find("disagree on the link's queue bounds"), std::string::npos) << what;
  EXPECT_EQ(first_code, ErrorCode::kUnavailable) << first_what;
}

}  // namespace
}  // namespace lockstep::transport
