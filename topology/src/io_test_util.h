// Shared helpers of the topology file tests (io_test.cc, io_errors_test.cc, io_file_test.cc).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <string_view>

#include "lockstep/common/error.h"
#include "lockstep/topology/io.h"

namespace lockstep::topology::io_test {

inline void ExpectSameTopology(const Topology& x, const Topology& y) {
  EXPECT_EQ(x.name(), y.name());
  EXPECT_EQ(x.specs(), y.specs());
  ASSERT_EQ(x.chip_count(), y.chip_count());
  for (ChipId i = 0; i < x.chip_count(); ++i) {
    const Chip& a = x.chip(i);
    const Chip& b = y.chip(i);
    ASSERT_EQ(a.id, b.id);
    ASSERT_EQ(a.node, b.node) << "chip " << i;
    ASSERT_EQ(a.rack, b.rack) << "chip " << i;
    ASSERT_EQ(a.spare, b.spare) << "chip " << i;
    ASSERT_EQ(a.down, b.down) << "chip " << i;
    ASSERT_EQ(a.spec, b.spec) << "chip " << i;
  }
  ASSERT_EQ(x.link_count(), y.link_count());
  for (LinkId i = 0; i < x.link_count(); ++i) {
    const Link& a = x.link(i);
    const Link& b = y.link(i);
    ASSERT_EQ(a.id, b.id);
    ASSERT_EQ(a.a, b.a) << "link " << i;
    ASSERT_EQ(a.b, b.b) << "link " << i;
    ASSERT_EQ(a.bandwidth_bytes_per_s, b.bandwidth_bytes_per_s) << "link " << i;
    ASSERT_EQ(a.latency_ns, b.latency_ns) << "link " << i;
    ASSERT_EQ(a.down, b.down) << "link " << i;
  }
}

// write -> parse -> write: same bytes, equal topology.
inline void ExpectRoundTrip(const Topology& topo) {
  const std::string first = WriteTopologyYaml(topo);
  const Topology parsed = ParseTopologyYaml(first, "roundtrip.yaml");
  ExpectSameTopology(topo, parsed);
  EXPECT_EQ(WriteTopologyYaml(parsed), first);
}

inline int CountLinesStartingWith(const std::string& text, std::string_view prefix) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.starts_with(prefix) ? 1 : 0;
  return n;
}

// The message of the Error parsing `text` throws (as file "rack.yaml"); fails the test if none.
inline std::string ParseError(std::string_view text) {
  try {
    ParseTopologyYaml(text, "rack.yaml");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line";
    return e.what();
  }
  ADD_FAILURE() << "parsed without error:\n" << text;
  return "";
}

// Two lpu-v1 chips on one node and a third in another; links go after line 9.
inline constexpr std::string_view kThreeChips = R"(format: lockstep-topology/1
name: three
chip_specs:
  - {name: lpu-v1, preset: lpu-v1}
chips:
  - {id: 0, node: 0, rack: 0}
  - {id: 1, node: 0, rack: 0}
  - {id: 2, node: 1, rack: 0}
links:
)";

inline std::string WithLinks(std::string_view links) {
  return std::string(kThreeChips) + std::string(links);
}

// A topology with everything the format can say: two specs (one a modified preset, one fully
// custom with a name that needs quoting), chips of both kinds, spare and down chips, links with
// their own figures and down links.
inline Topology MixedTopology() {
  Topology topo("mixed lab: bench #2");
  const int lpu = topo.AddSpec(LpuV1());
  ChipSpec custom;
  custom.name = "my chip";
  custom.sram_bytes = 1'000'000;
  custom.peak_ops_per_s[static_cast<int>(Dtype::kFp16)] = 100'000'000'000'000;
  custom.peak_ops_per_s[static_cast<int>(Dtype::kInt8)] = 400'000'000'000'000;
  custom.memory_bandwidth_bytes_per_s = 5'000'000'000'000;
  custom.clock_hz = 1'000'000'000;
  custom.ports = 4;
  custom.link_bandwidth_bytes_per_s = 12'345'678'901;
  custom.link_latency_ns = 0;  // zero is a figure, not "absent"
  const int mine = topo.AddSpec(custom);
  for (int i = 0; i < 4; ++i) topo.AddChip(0, 0, false, lpu);
  topo.AddChip(1, 0, false, mine);
  topo.AddChip(1, 0, true, mine);
  topo.AddChip(2, 1, true, lpu);
  topo.SetChipDown(2);
  topo.AddLink({0, 0}, {1, 0});
  topo.AddLink({1, 3}, {4, 1});  // an lpu-v1 a-chip: lpu-v1 figures
  topo.AddLink({4, 0}, {5, 0});  // a custom a-chip: its figures
  topo.AddLink({5, 2}, {6, 15}, 7'000'000'000, 900);
  topo.AddLink({2, 1}, {3, 1}, 14'000'000'000, 0);
  topo.SetLinkDown(3);
  return topo;
}

}  // namespace lockstep::topology::io_test
