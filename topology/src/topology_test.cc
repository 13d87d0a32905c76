// The Topology object refuses to become invalid: every structural error names the chip and port.
#include "lockstep/topology/topology.h"

#include <gtest/gtest.h>

#include "lockstep/common/error.h"

namespace lockstep::topology {
namespace {

Topology TwoChips() {
  Topology topo("pair");
  int s = topo.AddSpec(LpuV1());
  topo.AddChip(0, 0, false, s);
  topo.AddChip(0, 0, false, s);
  return topo;
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    return e.what();
  }
  ADD_FAILURE() << "expected an Error";
  return "";
}

TEST(Topology, LinkJoinsPortsBothWays) {
  Topology topo = TwoChips();
  LinkId l = topo.AddLink(PortRef{0, 3}, PortRef{1, 4});
  EXPECT_EQ(topo.LinkAt(PortRef{0, 3}), l);
  EXPECT_EQ(topo.LinkAt(PortRef{1, 4}), l);
  EXPECT_FALSE(topo.LinkAt(PortRef{0, 4}).has_value());
  EXPECT_EQ(topo.link(l).bandwidth_bytes_per_s, LpuV1().link_bandwidth_bytes_per_s);
  EXPECT_EQ(topo.link(l).Peer(1), (PortRef{0, 3}));
  EXPECT_EQ(topo.PortsUsed(0), 1);
}

TEST(Topology, RejectsAPortUsedTwice) {
  Topology topo = TwoChips();
  topo.AddLink(PortRef{0, 3}, PortRef{1, 4});
  std::string m = ErrorOf([&] { topo.AddLink(PortRef{0, 3}, PortRef{1, 5}); });
  EXPECT_NE(m.find("chip 0 port 3 is already used by link 0:3 <-> 1:4"), std::string::npos) << m;
}

TEST(Topology, RejectsAPortBeyondTheChip) {
  Topology topo = TwoChips();
  std::string m = ErrorOf([&] { topo.AddLink(PortRef{0, 16}, PortRef{1, 0}); });
  EXPECT_NE(m.find("chip 0 port 16 is out of range (lpu-v1 has ports 0..15)"), std::string::npos)
      << m;
}

TEST(Topology, RejectsUnknownChipsSelfLinksAndBadNumbers) {
  Topology topo = TwoChips();
  EXPECT_NE(ErrorOf([&] {
              topo.AddLink(PortRef{0, 0}, PortRef{2, 0});
            }).find("unknown chip 2"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] {
              topo.AddLink(PortRef{0, 0}, PortRef{0, 1});
            }).find("two different"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] {
              topo.AddLink(PortRef{0, 0}, PortRef{1, 0}, 0, 5);
            }).find("bandwidth must be > 0"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] {
              topo.AddLink(PortRef{0, 0}, PortRef{1, 0}, 10, -1);
            }).find("latency must be >= 0"),
            std::string::npos);
  EXPECT_EQ(topo.link_count(), 0);  // nothing half-added
}

TEST(Topology, RejectsDuplicateAndInvalidSpecs) {
  Topology topo = TwoChips();
  EXPECT_THROW(topo.AddSpec(LpuV1()), Error);
  ChipSpec bad = LpuV1();
  bad.name = "bad";
  bad.sram_bytes = 0;
  EXPECT_NE(ErrorOf([&] { topo.AddSpec(bad); }).find("sram_bytes must be > 0"), std::string::npos);
}

TEST(Topology, NeighborsSkipWhatIsDown) {
  Topology topo("tri");
  int s = topo.AddSpec(LpuV1());
  for (int i = 0; i < 3; ++i) topo.AddChip(0, 0, false, s);
  LinkId l01 = topo.AddLink(PortRef{0, 0}, PortRef{1, 0});
  topo.AddLink(PortRef{0, 1}, PortRef{2, 0});
  EXPECT_EQ(topo.Neighbors(0).size(), 2u);
  topo.SetLinkDown(l01);
  EXPECT_EQ(topo.Neighbors(0).size(), 1u);
  topo.SetChipDown(2);
  EXPECT_TRUE(topo.Neighbors(0).empty());
  EXPECT_TRUE(topo.Neighbors(2).empty());
}

TEST(ChipSpec, LpuV1CarriesThePublishedFigures) {
  ChipSpec s = LpuV1();
  EXPECT_EQ(s.sram_bytes, 220LL << 20);
  EXPECT_EQ(s.peak_ops(Dtype::kInt8), 750'000'000'000'000LL);
  EXPECT_EQ(s.peak_ops(Dtype::kFp16), 188'000'000'000'000LL);
  EXPECT_EQ(s.peak_ops(Dtype::kBf16), 0);
  EXPECT_EQ(s.ports, 16);
  EXPECT_EQ(s.clock_hz, 900'000'000);
  EXPECT_TRUE(CheckChipSpec(s).empty());
  EXPECT_EQ(ChipPreset("lpu-v1"), s);
  EXPECT_FALSE(ChipPreset("h100").has_value());
}

}  // namespace
}  // namespace lockstep::topology
