// The tcp port rule (transport.h): tcp_base_port + chip * tcp_ports_per_chip + port, checked
// before any socket opens, and the explicit per-end map for systems the rule cannot number.
#include "test_util.h"

namespace lockstep::transport {
namespace {

using namespace testing;

LinkSpec Link(uint32_t ca, uint32_t pa, uint32_t cb, uint32_t pb) {
  LinkSpec l;
  l.a = {ca, pa};
  l.b = {cb, pb};
  return l;
}

TEST(TcpPorts, ChipBeyondTheRuleIsRefusedNamingChipPortAndRemedy) {
  TransportOptions o;
  o.backend = "tcp";  // defaults: 27000 + chip * 16 + port fits chips 0..2407
  auto t = CreateTransport(o);
  LinkSpec link = Link(2500, 3, 2501, 3);
  // Both ends check the binding end's port (the connecting end would dial it).
  for (PortRef end : {link.a, link.b}) {
    ExpectError(
        [&] { t->Open(link, end, Millis(100)); }, ErrorCode::kInvalidInput,
        {"link chip 2500:3 <-> chip 2501:3", "tcp port of chip 2500:3",
         "27000 + 2500 * 16 + 3 = 67003 (> 65535)", "chips 0..2407", "tcp_ports[chip 2500:3]"});
  }
  // The last chip the rule fits is accepted by the check (its peer is simply not there).
  LinkSpec last = Link(2407, 15, 2408, 0);
  ExpectError([&] { t->Open(last, last.a, Millis(50)); }, ErrorCode::kUnavailable,
              {"peer chip 2408 did not connect"});
}

TEST(TcpPorts, PortOutsideThePerChipRangeIsRefused) {
  TransportOptions o;
  o.backend = "tcp";
  o.tcp_ports_per_chip = 4;
  auto t = CreateTransport(o);
  LinkSpec link = Link(1, 5, 2, 0);
  ExpectError([&] { t->Open(link, link.b, Millis(100)); }, ErrorCode::kInvalidInput,
              {"link chip 1:5 <-> chip 2:0", "needs port < 4, not 5",
               "chip 1:5 is not listed in tcp_ports"});
}

TEST(TcpPorts, BadOptionsAreRefused) {
  TransportOptions o;
  o.backend = "tcp";
  o.tcp_ports_per_chip = 0;
  auto t = CreateTransport(o);
  LinkSpec link = Link(0, 0, 1, 0);
  ExpectError([&] { t->Open(link, link.a, Millis(100)); }, ErrorCode::kInvalidInput,
              {"tcp_ports_per_chip 0"});
  o.tcp_ports_per_chip = 16;
  o.tcp_ports[{0, 0}] = 70000;
  auto t2 = CreateTransport(o);
  ExpectError([&] { t2->Open(link, link.a, Millis(100)); }, ErrorCode::kInvalidInput,
              {"tcp_ports[chip 0:0] is 70000 (valid: 1..65535)"});
}

TEST(TcpPorts, ListedPortsNumberChipsTheRuleCannot) {
  // Chip 9000 is far beyond the rule; its end lists an explicit port and the link works.
  TransportOptions o = OptionsFor("tcp");
  LinkSpec link = Link(9000, 12, 9001, 40);
  o.tcp_ports[link.a] = o.tcp_base_port + 63;  // inside this test process's range
  auto t = CreateTransport(o);
  Pair p = OpenPair(*t, link);
  p.a->Send(Tensor(0, 1, 5000, 9), kWait);
  EXPECT_TRUE(HasPattern(p.b->Receive(Want(0, 1), kWait).payload, 9));
}

}  // namespace
}  // namespace lockstep::transport
