// Topology files: what WriteTopologyYaml / ParseTopologyYaml / SaveTopology / LoadTopology
// promise (lockstep/topology/io.h, topology/FORMAT.md).
#include "lockstep/topology/io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"

namespace lockstep::topology {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

void ExpectSameTopology(const Topology& x, const Topology& y) {
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
void ExpectRoundTrip(const Topology& topo) {
  const std::string first = WriteTopologyYaml(topo);
  const Topology parsed = ParseTopologyYaml(first, "roundtrip.yaml");
  ExpectSameTopology(topo, parsed);
  EXPECT_EQ(WriteTopologyYaml(parsed), first);
}

int CountLinesStartingWith(const std::string& text, std::string_view prefix) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.starts_with(prefix) ? 1 : 0;
  return n;
}

// The message of the Error parsing `text` throws (as file "rack.yaml"); fails the test if none.
std::string ParseError(std::string_view text) {
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
constexpr std::string_view kThreeChips = R"(format: lockstep-topology/1
name: three
chip_specs:
  - {name: lpu-v1, preset: lpu-v1}
chips:
  - {id: 0, node: 0, rack: 0}
  - {id: 1, node: 0, rack: 0}
  - {id: 2, node: 1, rack: 0}
links:
)";

std::string WithLinks(std::string_view links) {
  return std::string(kThreeChips) + std::string(links);
}

// A topology with everything the format can say: two specs (one a modified preset, one fully
// custom with a name that needs quoting), chips of both kinds, spare and down chips, links with
// their own figures and down links.
Topology MixedTopology() {
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

// --- Validation: every message names file, line and field ----------------------------------------

TEST(TopologyIoTest, PortOutOfRange) {
  const std::string msg = ParseError(WithLinks(
      "  - {a: \"0:0\", b: \"1:0\"}\n  - {a: \"0:1\", b: \"2:1\"}\n  - {a: \"1:1\", b: \"2:2\"}\n"
      "  - {a: \"0:2\", b: \"2:17\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:13: links[3].b: "));
  EXPECT_THAT(msg, HasSubstr("chip 2 port 17 is out of range (lpu-v1 has ports 0..15)"));
}

TEST(TopologyIoTest, DuplicateChipId) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0, rack: 0}
  - {id: 1, node: 0, rack: 0}
  - {id: 1, node: 0, rack: 0}
)");
  EXPECT_THAT(msg,
              StartsWith("rack.yaml:6: chips[2].id: duplicate id 1 (also chips[1] at line 5)"));
}

TEST(TopologyIoTest, ChipIdsMustBeDense) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0, rack: 0}
  - {id: 64, node: 8, rack: 0, spare: true}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:5: chips[1].id: id 64 is out of range"));
  EXPECT_THAT(msg, HasSubstr("ids must be exactly 0..1"));
}

TEST(TopologyIoTest, DuplicateLinkNamesTheEarlierLink) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:1\", b: \"1:0\"}\n  - {a: \"0:2\", b: \"2:0\"}\n"
                           "  - {a: \"1:0\", b: \"0:1\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:12: links[2]: duplicate link 1:0 <-> 0:1 "
                              "(same ports as links[0] at line 10)"));
}

TEST(TopologyIoTest, PortReuseNamesTheEarlierLink) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:1\", b: \"1:0\"}\n  - {a: \"2:5\", b: \"1:0\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:11: links[1].b: "));
  EXPECT_THAT(msg, HasSubstr("chip 1 port 0 is already used"));
  EXPECT_THAT(msg, HasSubstr("(links[0] at line 10)"));
}

TEST(TopologyIoTest, LinkToUnknownChip) {
  const std::string msg = ParseError(WithLinks("  - {a: \"7:0\", b: \"1:0\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0].a: "));
  EXPECT_THAT(msg, HasSubstr("unknown chip 7 (chips are 0..2)"));
}

TEST(TopologyIoTest, LinkFromChipToItself) {
  const std::string msg = ParseError(WithLinks("  - {a: \"1:0\", b: \"1:1\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0]: "));
  EXPECT_THAT(msg, HasSubstr("two different chips"));
}

TEST(TopologyIoTest, NonPositiveBandwidth) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\",\n     bandwidth_bytes_per_s: 0}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:11: links[0].bandwidth_bytes_per_s: "));
  EXPECT_THAT(msg, HasSubstr("bandwidth must be > 0 bytes/s, got 0"));
}

TEST(TopologyIoTest, NegativeLatency) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\"}\n  - {a: \"0:1\", b: \"2:0\", "
                           "latency_ns: -5}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:11: links[1].latency_ns: "));
  EXPECT_THAT(msg, HasSubstr("latency must be >= 0 ns, got -5"));
}

TEST(TopologyIoTest, UnknownFieldNamesTheValidOnes) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0, rack: 0, sapre: true}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chips[0]: unknown field 'sapre' (valid fields: id, "
                              "node, rack, spec, spare, down)"));
}

TEST(TopologyIoTest, UnknownTopLevelField) {
  const std::string msg = ParseError("format: lockstep-topology/1\nchip_spec: []\n");
  EXPECT_THAT(msg, StartsWith("rack.yaml:2: unknown field 'chip_spec' (valid fields: format, "
                              "name, chip_specs, defaults, chips, links)"));
}

TEST(TopologyIoTest, RepeatedField) {
  const std::string msg = ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\", a: \"0:1\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0]: field 'a' is given twice"));
}

TEST(TopologyIoTest, UnknownSpecNamesTheDefinedOnes) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0, rack: 0}
  - {id: 1, node: 0, rack: 0, spec: lpu-v2}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:5: chips[1].spec: unknown chip spec 'lpu-v2' "
                              "(chip_specs defines lpu-v1)"));
}

TEST(TopologyIoTest, UnknownDefaultSpec) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
defaults: {spec: lpu}
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:3: defaults.spec: unknown chip spec 'lpu'"));
}

TEST(TopologyIoTest, UnknownPresetNamesThePresets) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - {name: lpu-v1, preset: lpu-v1}
  - {name: next, preset: lpu-v9}
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chip_specs[1].preset: unknown preset 'lpu-v9' "
                              "(presets: lpu-v1)"));
}

TEST(TopologyIoTest, SpecWithoutPresetMustGiveEveryField) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - name: mine
    sram_bytes: 1000
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:3: chip_specs[0]: missing field 'peak_ops_per_s'"));
}

TEST(TopologyIoTest, InvalidSpecFigurePointsAtTheField) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - name: tiny
    preset: lpu-v1
    ports: 0
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:5: chip_specs[0].ports: chip spec 'tiny': ports must be "
                              "> 0, got 0"));
}

TEST(TopologyIoTest, PortCountIsBounded) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - {name: wide, preset: lpu-v1, ports: 1600000000}
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:3: chip_specs[0].ports: must be <= 4096, got 1600000000"));
}

TEST(TopologyIoTest, DuplicateSpecName) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - {name: lpu-v1, preset: lpu-v1}
  - {name: lpu-v1, preset: lpu-v1, ports: 4}
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chip_specs[1].name: chip spec 'lpu-v1' is defined "
                              "twice (also chip_specs[0])"));
}

TEST(TopologyIoTest, MissingRequiredField) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chips[0]: missing field 'rack'"));
}

TEST(TopologyIoTest, WrongTypeSaysWhatWasExpected) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: abc, rack: 0}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chips[0].node: expected an integer, got 'abc'"));
  EXPECT_THAT(ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\", down: maybe}\n")),
              StartsWith("rack.yaml:10: links[0].down: expected true or false, got 'maybe'"));
  EXPECT_THAT(ParseError("format: lockstep-topology/1\nchip_specs: {name: x}\nchips: []\n"),
              StartsWith("rack.yaml:2: chip_specs: expected a list, got a mapping"));
  EXPECT_THAT(ParseError(WithLinks("  - [\"0:0\", \"1:0\"]\n")),
              StartsWith("rack.yaml:10: links[0]: expected a mapping"));
}

TEST(TopologyIoTest, FractionsAreNotIntegers) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\", bandwidth_bytes_per_s: 1.5e0}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0].bandwidth_bytes_per_s: expected an "
                              "integer, got '1.5e0'"));
}

TEST(TopologyIoTest, IntegerBeyondRange) {
  const std::string msg = ParseError(
      WithLinks("  - {a: \"0:0\", b: \"1:0\", bandwidth_bytes_per_s: 9223372036854775808}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0].bandwidth_bytes_per_s: expected an "
                              "integer"));
}

TEST(TopologyIoTest, MalformedPortRef) {
  const std::string msg = ParseError(WithLinks("  - {a: \"0-0\", b: \"1:0\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0].a: expected \"chip:port\" like \"3:7\", "
                              "got '0-0'"));
}

TEST(TopologyIoTest, BadFormatVersion) {
  const std::string msg = ParseError("format: lockstep-topology/2\nchip_specs: []\nchips: []\n");
  EXPECT_THAT(msg, StartsWith("rack.yaml:1: format: unsupported format 'lockstep-topology/2' "
                              "(this build reads lockstep-topology/1)"));
  EXPECT_THAT(ParseError("chip_specs: []\nchips: []\n"),
              StartsWith("rack.yaml:1: missing field 'format'"));
}

TEST(TopologyIoTest, YamlSyntaxErrorHasTheLine) {
  const std::string msg = ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\"\n  - {a: \"0:1\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:"));
  EXPECT_THAT(msg, HasSubstr(": YAML syntax error: "));
  const std::string msg2 = ParseError("format: lockstep-topology/1\nchips: [1, 2]]\n");
  EXPECT_THAT(msg2, StartsWith("rack.yaml:2: YAML syntax error: "));
}

TEST(TopologyIoTest, EmptyFileAndSecondDocument) {
  EXPECT_THAT(ParseError(""), StartsWith("rack.yaml:1: empty file"));
  EXPECT_THAT(ParseError(std::string(kThreeChips) + "---\nformat: x\n"),
              StartsWith("rack.yaml:11: YAML syntax error: a topology file holds one YAML"));
}

// --- Files ---------------------------------------------------------------------------------------

class TopologyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("lockstep_io_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Entries of the test directory (a failed save must leave no temporary file behind).
  int EntryCount() const {
    return static_cast<int>(std::distance(std::filesystem::directory_iterator(dir_),
                                          std::filesystem::directory_iterator()));
  }

  std::filesystem::path dir_;
};

TEST_F(TopologyFileTest, SaveThenLoad) {
  const Topology topo = MixedTopology();
  const std::string path = (dir_ / "mixed.yaml").string();
  SaveTopology(topo, path);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), WriteTopologyYaml(topo));
  ExpectSameTopology(topo, LoadTopology(path));
  EXPECT_EQ(EntryCount(), 1) << "no temporary file left";
  // Saving again replaces the file.
  SaveTopology(GenerateRing(LpuV1(), 3), path);
  EXPECT_EQ(LoadTopology(path).chip_count(), 3);
  EXPECT_EQ(EntryCount(), 1);
}

TEST_F(TopologyFileTest, LoadErrorsNameThePath) {
  const std::string path = (dir_ / "bad.yaml").string();
  std::ofstream(path) << "format: lockstep-topology/1\nchip_specs: []\nchips:\n  - {id: 0}\n";
  try {
    LoadTopology(path);
    FAIL() << "loaded a bad file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_THAT(e.what(), StartsWith(path + ":4: chips[0]: missing field 'node'"));
  }
}

TEST_F(TopologyFileTest, LoadMissingFileIsNotFound) {
  const std::string path = (dir_ / "nope.yaml").string();
  try {
    LoadTopology(path);
    FAIL() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr(path));
  }
}

TEST_F(TopologyFileTest, LoadDirectoryIsInvalidInput) {
  try {
    LoadTopology(dir_.string());
    FAIL() << "loaded a directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_THAT(e.what(), HasSubstr(dir_.string()));
    EXPECT_THAT(e.what(), HasSubstr("directory"));
  }
}

TEST_F(TopologyFileTest, SaveIntoMissingDirectoryIsNotFound) {
  const std::string path = (dir_ / "no" / "such" / "dir.yaml").string();
  try {
    SaveTopology(GenerateNode(LpuV1()), path);
    FAIL() << "saved into a missing directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr(path));
  }
}

TEST_F(TopologyFileTest, FailedSaveLeavesNoPartialFile) {
  // The target is a directory, so the final rename fails after the data was written.
  const std::filesystem::path target = dir_ / "taken";
  std::filesystem::create_directory(target);
  try {
    SaveTopology(GenerateNode(LpuV1()), target.string());
    FAIL() << "saved over a directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_THAT(e.what(), HasSubstr(target.string()));
  }
  EXPECT_EQ(EntryCount(), 1) << "only the directory, no temporary file";
  EXPECT_TRUE(std::filesystem::is_directory(target));
}

}  // namespace
}  // namespace lockstep::topology
