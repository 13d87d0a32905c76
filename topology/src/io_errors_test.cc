// Topology files, validation: every problem is one line naming the file, the line and the field.
#include <string>

#include "io_test_util.h"
#include "lockstep/topology/io.h"

namespace lockstep::topology {
namespace {

using io_test::kThreeChips;
using io_test::ParseError;
using io_test::WithLinks;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// --- Validation: every message names file, line and field ----------------------------------------

TEST(TopologyIoErrorTest, PortOutOfRange) {
  const std::string msg = ParseError(WithLinks(
      "  - {a: \"0:0\", b: \"1:0\"}\n  - {a: \"0:1\", b: \"2:1\"}\n  - {a: \"1:1\", b: \"2:2\"}\n"
      "  - {a: \"0:2\", b: \"2:17\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:13: links[3].b: "));
  EXPECT_THAT(msg, HasSubstr("chip 2 port 17 is out of range (lpu-v1 has ports 0..15)"));
}

TEST(TopologyIoErrorTest, DuplicateChipId) {
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

TEST(TopologyIoErrorTest, ChipIdsMustBeDense) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0, rack: 0}
  - {id: 64, node: 8, rack: 0, spare: true}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:5: chips[1].id: id 64 is out of range"));
  EXPECT_THAT(msg, HasSubstr("ids must be exactly 0..1"));
}

TEST(TopologyIoErrorTest, DuplicateLinkNamesTheEarlierLink) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:1\", b: \"1:0\"}\n  - {a: \"0:2\", b: \"2:0\"}\n"
                           "  - {a: \"1:0\", b: \"0:1\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:12: links[2]: duplicate link 1:0 <-> 0:1 "
                              "(same ports as links[0] at line 10)"));
}

TEST(TopologyIoErrorTest, PortReuseNamesTheEarlierLink) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:1\", b: \"1:0\"}\n  - {a: \"2:5\", b: \"1:0\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:11: links[1].b: "));
  EXPECT_THAT(msg, HasSubstr("chip 1 port 0 is already used"));
  EXPECT_THAT(msg, HasSubstr("(links[0] at line 10)"));
}

TEST(TopologyIoErrorTest, LinkToUnknownChip) {
  const std::string msg = ParseError(WithLinks("  - {a: \"7:0\", b: \"1:0\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0].a: "));
  EXPECT_THAT(msg, HasSubstr("unknown chip 7 (chips are 0..2)"));
}

TEST(TopologyIoErrorTest, LinkFromChipToItself) {
  const std::string msg = ParseError(WithLinks("  - {a: \"1:0\", b: \"1:1\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0]: "));
  EXPECT_THAT(msg, HasSubstr("two different chips"));
}

TEST(TopologyIoErrorTest, NonPositiveBandwidth) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\",\n     bandwidth_bytes_per_s: 0}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:11: links[0].bandwidth_bytes_per_s: "));
  EXPECT_THAT(msg, HasSubstr("bandwidth must be > 0 bytes/s, got 0"));
}

TEST(TopologyIoErrorTest, NegativeLatency) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\"}\n  - {a: \"0:1\", b: \"2:0\", "
                           "latency_ns: -5}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:11: links[1].latency_ns: "));
  EXPECT_THAT(msg, HasSubstr("latency must be >= 0 ns, got -5"));
}

TEST(TopologyIoErrorTest, UnknownFieldNamesTheValidOnes) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0, rack: 0, sapre: true}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chips[0]: unknown field 'sapre' (valid fields: id, "
                              "node, rack, spec, spare, down)"));
}

TEST(TopologyIoErrorTest, UnknownTopLevelField) {
  const std::string msg = ParseError("format: lockstep-topology/1\nchip_spec: []\n");
  EXPECT_THAT(msg, StartsWith("rack.yaml:2: unknown field 'chip_spec' (valid fields: format, "
                              "name, chip_specs, defaults, chips, links)"));
}

TEST(TopologyIoErrorTest, RepeatedField) {
  const std::string msg = ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\", a: \"0:1\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0]: field 'a' is given twice"));
}

TEST(TopologyIoErrorTest, UnknownSpecNamesTheDefinedOnes) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0, rack: 0}
  - {id: 1, node: 0, rack: 0, spec: lpu-v2}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:5: chips[1].spec: unknown chip spec 'lpu-v2' "
                              "(chip_specs defines lpu-v1)"));
}

TEST(TopologyIoErrorTest, UnknownDefaultSpec) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
defaults: {spec: lpu}
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:3: defaults.spec: unknown chip spec 'lpu'"));
}

TEST(TopologyIoErrorTest, UnknownPresetNamesThePresets) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - {name: lpu-v1, preset: lpu-v1}
  - {name: next, preset: lpu-v9}
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chip_specs[1].preset: unknown preset 'lpu-v9' "
                              "(presets: lpu-v1)"));
}

TEST(TopologyIoErrorTest, SpecWithoutPresetMustGiveEveryField) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - name: mine
    sram_bytes: 1000
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:3: chip_specs[0]: missing field 'peak_ops_per_s'"));
}

TEST(TopologyIoErrorTest, InvalidSpecFigurePointsAtTheField) {
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

TEST(TopologyIoErrorTest, PortCountIsBounded) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - {name: wide, preset: lpu-v1, ports: 1600000000}
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:3: chip_specs[0].ports: must be <= 4096, got 1600000000"));
}

TEST(TopologyIoErrorTest, DuplicateSpecName) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs:
  - {name: lpu-v1, preset: lpu-v1}
  - {name: lpu-v1, preset: lpu-v1, ports: 4}
chips: []
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chip_specs[1].name: chip spec 'lpu-v1' is defined "
                              "twice (also chip_specs[0])"));
}

TEST(TopologyIoErrorTest, MissingRequiredField) {
  const std::string msg = ParseError(R"(format: lockstep-topology/1
chip_specs: [{name: lpu-v1, preset: lpu-v1}]
chips:
  - {id: 0, node: 0}
)");
  EXPECT_THAT(msg, StartsWith("rack.yaml:4: chips[0]: missing field 'rack'"));
}

TEST(TopologyIoErrorTest, WrongTypeSaysWhatWasExpected) {
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

TEST(TopologyIoErrorTest, FractionsAreNotIntegers) {
  const std::string msg =
      ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\", bandwidth_bytes_per_s: 1.5e0}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0].bandwidth_bytes_per_s: expected an "
                              "integer, got '1.5e0'"));
}

TEST(TopologyIoErrorTest, IntegerBeyondRange) {
  const std::string msg = ParseError(
      WithLinks("  - {a: \"0:0\", b: \"1:0\", bandwidth_bytes_per_s: 9223372036854775808}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0].bandwidth_bytes_per_s: expected an "
                              "integer"));
}

TEST(TopologyIoErrorTest, MalformedPortRef) {
  const std::string msg = ParseError(WithLinks("  - {a: \"0-0\", b: \"1:0\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:10: links[0].a: expected \"chip:port\" like \"3:7\", "
                              "got '0-0'"));
}

TEST(TopologyIoErrorTest, BadFormatVersion) {
  const std::string msg = ParseError("format: lockstep-topology/2\nchip_specs: []\nchips: []\n");
  EXPECT_THAT(msg, StartsWith("rack.yaml:1: format: unsupported format 'lockstep-topology/2' "
                              "(this build reads lockstep-topology/1)"));
  EXPECT_THAT(ParseError("chip_specs: []\nchips: []\n"),
              StartsWith("rack.yaml:1: missing field 'format'"));
}

TEST(TopologyIoErrorTest, YamlSyntaxErrorHasTheLine) {
  const std::string msg = ParseError(WithLinks("  - {a: \"0:0\", b: \"1:0\"\n  - {a: \"0:1\"}\n"));
  EXPECT_THAT(msg, StartsWith("rack.yaml:"));
  EXPECT_THAT(msg, HasSubstr(": YAML syntax error: "));
  const std::string msg2 = ParseError("format: lockstep-topology/1\nchips: [1, 2]]\n");
  EXPECT_THAT(msg2, StartsWith("rack.yaml:2: YAML syntax error: "));
}

TEST(TopologyIoErrorTest, EmptyFileAndSecondDocument) {
  EXPECT_THAT(ParseError(""), StartsWith("rack.yaml:1: empty file"));
  EXPECT_THAT(ParseError(std::string(kThreeChips) + "---\nformat: x\n"),
              StartsWith("rack.yaml:11: YAML syntax error: a topology file holds one YAML"));
}

}  // namespace
}  // namespace lockstep::topology
