// Topology files, round trips and reading: what WriteTopologyYaml / ParseTopologyYaml promise
// (lockstep/topology/io.h, topology/FORMAT.md). Errors: io_errors_test.cc; files: io_file_test.cc.
#include "lockstep/topology/io.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "io_test_util.h"
#include "lockstep/topology/generators.h"

namespace lockstep::topology {
namespace {

using io_test::CountLinesStartingWith;
using io_test::ExpectRoundTrip;
using io_test::ExpectSameTopology;
using io_test::MixedTopology;
using io_test::ParseError;
using io_test::WithLinks;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// --- Round trips --------------------------------------------------------------------------

TEST(TopologyIoTest, NodeRoundTrips) { ExpectRoundTrip(GenerateNode(LpuV1())); }

TEST(TopologyIoTest, RackRoundTripsWithSpares) {
  const Topology rack = GenerateRack(LpuV1());
  ASSERT_GT(rack.spare_count(), 0);
  ExpectRoundTrip(rack);
}

TEST(TopologyIoTest, TwoRackSystemRoundTrips) { ExpectRoundTrip(GenerateSystem(LpuV1(), 2)); }

TEST(TopologyIoTest, RingRoundTrips) { ExpectRoundTrip(GenerateRing(LpuV1(), 5)); }

TEST(TopologyIoTest, CustomSpecsFlagsAndLinkFiguresRoundTrip) { ExpectRoundTrip(MixedTopology()); }

TEST(TopologyIoTest, ModifiedPresetRoundTripsAsPresetPlusDifferences) {
  Topology topo("tweaked");
  ChipSpec spec = LpuV1();
  spec.ports = 8;
  spec.peak_ops_per_s[static_cast<int>(Dtype::kFp16)] = 0;
  topo.AddSpec(spec);
  topo.AddChip(0, 0, false);
  topo.AddChip(0, 0, false);
  topo.AddLink({0, 7}, {1, 7});
  const std::string text = WriteTopologyYaml(topo);
  EXPECT_THAT(text, HasSubstr("    preset: lpu-v1\n    peak_ops_per_s: {fp16: 0}\n    ports: 8\n"));
  EXPECT_THAT(text, Not(HasSubstr("sram_bytes")));
  ExpectRoundTrip(topo);
}

// A measured host's cost figures travel with its chip spec, as written (issue #21).
TEST(TopologyIoTest, ChipCostParamsRoundTripAsWritten) {
  Topology topo("host");
  ChipSpec spec = LpuV1();
  spec.name = "host-core";
  spec.cost_params = {{"weight_stream_bytes_per_s", "12500000000"},
                      {"matrix_efficiency", "0.93"},
                      {"op_overhead_ns", "850"}};
  topo.AddSpec(spec);
  topo.AddChip(0, 0, false);
  const std::string text = WriteTopologyYaml(topo);
  EXPECT_THAT(text, HasSubstr("cost_params: {matrix_efficiency: 0.93, op_overhead_ns: 850, "
                              "weight_stream_bytes_per_s: 12500000000}\n"));
  ExpectRoundTrip(topo);
  const Topology back = ParseTopologyYaml(text, "mem");
  EXPECT_EQ(back.specs()[0].cost_params.at("matrix_efficiency"), "0.93");
  EXPECT_THAT(ParseError("format: lockstep-topology/1\nchip_specs:\n"
                         "  - {name: c, preset: lpu-v1, cost_params: [1, 2]}\nchips: []\n"),
              HasSubstr("chip_specs[0].cost_params: expected a mapping of cost figures"));
}

TEST(TopologyIoTest, NamesNeedingQuotesRoundTrip) {
  for (const std::string name :
       {"", "null", "~", "123", "true", "-x", "a \"b\" \\c", "line\nbreak\ttab",
        "\xc3\xbcnic\xc3\xb6"
        "de"}) {
    Topology topo(name);
    ChipSpec spec = LpuV1();
    spec.name = name.empty() ? "unnamed" : name;
    topo.AddSpec(LpuV1());
    topo.AddSpec(spec.name == "lpu-v1" ? LpuV1() : spec);
    topo.AddChip(0, 0, false, 1);
    SCOPED_TRACE(name);
    ExpectRoundTrip(topo);
    EXPECT_EQ(ParseTopologyYaml(WriteTopologyYaml(topo), "names.yaml").name(), name);
  }
}

TEST(TopologyIoTest, EmptyTopologyRoundTrips) { ExpectRoundTrip(Topology("empty")); }

// 10,440 chips, ~57,000 links; one test, and it must stay fast (see bench/topology_io_bench.cc).
TEST(TopologyIoTest, LargestSystemRoundTrips) {
  const Topology topo = GenerateSystem(LpuV1(), MaxSystemRacks(LpuV1()));
  ASSERT_EQ(topo.chip_count(), 10'440);
  const std::string text = WriteTopologyYaml(topo);
  EXPECT_EQ(CountLinesStartingWith(text, "  - {id: "), topo.chip_count());
  EXPECT_EQ(CountLinesStartingWith(text, "  - {a: "), topo.link_count());
  EXPECT_LT(text.size(), 3u << 20) << "one short line per chip and link";
  const Topology parsed = ParseTopologyYaml(text, "system145.yaml");
  ExpectSameTopology(topo, parsed);
  EXPECT_EQ(WriteTopologyYaml(parsed), text);
}

// --- What the writer leaves out ---------------------------------------------------------------

TEST(TopologyIoTest, WriterOmitsFieldsEqualToDefaults) {
  const std::string text = WriteTopologyYaml(MixedTopology());
  // Chips on the most used spec do not name it; spare/down appear only when set.
  EXPECT_THAT(text, HasSubstr("defaults: {spec: lpu-v1}\n"));
  EXPECT_THAT(text, HasSubstr("  - {id: 0, node: 0, rack: 0}\n"));
  EXPECT_THAT(text, HasSubstr("  - {id: 4, node: 1, rack: 0, spec: \"my chip\"}\n"));
  EXPECT_THAT(text, HasSubstr("  - {id: 2, node: 0, rack: 0, down: true}\n"));
  EXPECT_THAT(text, HasSubstr("  - {id: 6, node: 2, rack: 1, spare: true}\n"));
  // Links with chip a's figures carry none.
  EXPECT_THAT(text, HasSubstr("  - {a: \"0:0\", b: \"1:0\"}\n"));
  EXPECT_THAT(text, HasSubstr("  - {a: \"4:0\", b: \"5:0\"}\n"));
  EXPECT_THAT(text, HasSubstr("  - {a: \"5:2\", b: \"6:15\", bandwidth_bytes_per_s: 7000000000, "
                              "latency_ns: 900, down: true}\n"));
  EXPECT_THAT(text, HasSubstr("  - {a: \"2:1\", b: \"3:1\", latency_ns: 0}\n"));
  EXPECT_THAT(text, HasSubstr("name: \"mixed lab: bench #2\"\n"));
}

TEST(TopologyIoTest, WritingIsDeterministic) {
  EXPECT_EQ(WriteTopologyYaml(MixedTopology()), WriteTopologyYaml(MixedTopology()));
  EXPECT_EQ(WriteTopologyYaml(GenerateRack(LpuV1())), WriteTopologyYaml(GenerateRack(LpuV1())));
}

// --- Reading hand-written files ----------------------------------------------------------------

TEST(TopologyIoTest, ReadsHandWrittenFile) {
  const Topology topo = ParseTopologyYaml(R"(# two chips, written by hand
format: lockstep-topology/1
name: bench
chip_specs:
  - {name: lpu-v1, preset: lpu-v1}
  - name: slow
    preset: lpu-v1
    link_bandwidth_bytes_per_s: 1.2e10     # exact integers may use an exponent
    peak_ops_per_s: {int8: 1e14}          # listed dtypes override the preset, others stay
defaults: {spec: slow}
chips:                                    # any order
  - {id: 1, node: 0, rack: 0, spec: lpu-v1, down: true}
  - id: 0
    node: 0
    rack: 0
    spare: true
links:
  - {a: "1:15", b: "0:3", latency_ns: 250}
  - {a: 0:4, b: 1:4, down: true}            # plain chip:port works too
)",
                                          "bench.yaml");
  EXPECT_EQ(topo.name(), "bench");
  ASSERT_EQ(topo.specs().size(), 2u);
  const ChipSpec& slow = topo.specs()[1];
  EXPECT_EQ(slow.name, "slow");
  EXPECT_EQ(slow.link_bandwidth_bytes_per_s, 12'000'000'000);
  EXPECT_EQ(slow.peak_ops(Dtype::kInt8), 100'000'000'000'000);
  EXPECT_EQ(slow.peak_ops(Dtype::kFp16), LpuV1().peak_ops(Dtype::kFp16));
  EXPECT_EQ(slow.sram_bytes, LpuV1().sram_bytes);
  ASSERT_EQ(topo.chip_count(), 2);
  EXPECT_EQ(topo.chip(0).spec, 1);  // defaults.spec
  EXPECT_TRUE(topo.chip(0).spare);
  EXPECT_FALSE(topo.chip(0).down);
  EXPECT_EQ(topo.chip(1).spec, 0);
  EXPECT_TRUE(topo.chip(1).down);
  ASSERT_EQ(topo.link_count(), 2);
  EXPECT_EQ(topo.link(0).a, (PortRef{1, 15}));
  EXPECT_EQ(topo.link(0).b, (PortRef{0, 3}));
  // Unwritten bandwidth comes from chip a (lpu-v1), not chip b (slow).
  EXPECT_EQ(topo.link(0).bandwidth_bytes_per_s, LpuV1().link_bandwidth_bytes_per_s);
  EXPECT_EQ(topo.link(0).latency_ns, 250);
  EXPECT_EQ(topo.link(1).bandwidth_bytes_per_s, 12'000'000'000);  // chip 0 is slow
  EXPECT_TRUE(topo.link(1).down);
}

TEST(TopologyIoTest, BlankListsAreEmptyAndAnchorsExpand) {
  const Topology topo = ParseTopologyYaml(R"(format: lockstep-topology/1
chip_specs:
  - {name: &chip lpu-v1, preset: lpu-v1}
defaults: {spec: *chip}
chips:
  - &plain {id: 0, node: 0, rack: 0}
links:
)",
                                          "blank.yaml");
  EXPECT_EQ(topo.chip_count(), 1);
  EXPECT_EQ(topo.link_count(), 0);
  EXPECT_THAT(ParseError("format: lockstep-topology/1\nchip_specs: [{name: a, preset: lpu-v1}]\n"
                         "chips:\n  - &c {id: 0, node: 0, rack: 0}\n  - *c\n"),
              StartsWith("rack.yaml:5: chips[1].id: duplicate id 0 (also chips[0] at line 4)"));
}

// The example in topology/FORMAT.md is a valid file (tests run in topology/).
TEST(TopologyIoTest, FormatDocumentExampleParses) {
  std::ifstream in("FORMAT.md");
  ASSERT_TRUE(in) << "FORMAT.md not found from " << std::filesystem::current_path();
  std::stringstream doc;
  doc << in.rdbuf();
  const std::string text = doc.str();
  const size_t begin = text.find("```yaml\n");
  ASSERT_NE(begin, std::string::npos);
  const size_t end = text.find("```", begin + 8);
  ASSERT_NE(end, std::string::npos);
  const Topology topo = ParseTopologyYaml(text.substr(begin + 8, end - begin - 8), "FORMAT.md");
  EXPECT_EQ(topo.chip_count(), 3);
  EXPECT_EQ(topo.link_count(), 2);
  EXPECT_EQ(topo.spec_of(2).name, "my-chip");
  EXPECT_EQ(topo.spec_of(2).peak_ops(Dtype::kInt8), 400'000'000'000'000);
  EXPECT_TRUE(topo.chip(1).down);
  EXPECT_TRUE(topo.link(1).down);
}

TEST(TopologyIoTest, LargeIntegersAreExact) {
  // 2^53 + 1 is not a double; a reader going through floating point would lose the 1.
  const Topology topo = ParseTopologyYaml(
      WithLinks("  - {a: \"0:0\", b: \"1:0\", bandwidth_bytes_per_s: 9007199254740993}\n"
                "  - {a: \"0:1\", b: \"1:1\", bandwidth_bytes_per_s: 9.007199254740993e15}\n"),
      "big.yaml");
  EXPECT_EQ(topo.link(0).bandwidth_bytes_per_s, 9'007'199'254'740'993);
  EXPECT_EQ(topo.link(1).bandwidth_bytes_per_s, 9'007'199'254'740'993);
}

}  // namespace
}  // namespace lockstep::topology
