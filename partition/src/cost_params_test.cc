#include "lockstep/partition/cost_params.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "lockstep/common/error.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/generators.h"

namespace lockstep::partition {
namespace {

using ::testing::HasSubstr;

const std::filesystem::path kSource = LOCKSTEP_SOURCE_DIR;

ModelSpec Example(const std::string& name) {
  return LoadModelSpec(kSource / "examples" / "models" / name);
}

std::string ParseError(const std::string& text) {
  try {
    ParseCostParams(text, "p.yaml", CostParamsForChip(topology::LpuV1()));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    return e.what();
  }
  ADD_FAILURE() << "parsed: " << text;
  return "";
}

TEST(CostParamsTest, RoundTripsWithNotesByteForByte) {
  CostParams p = CostParamsForChip(topology::LpuV1());
  p.name = "lab \"chip\"";
  p.chip.matrix_efficiency = 0.123456789;
  p.runtime = {.control_hops = 2,
               .control_hop_ns = 81234,
               .step_overhead_ns = 900,
               .shared_weight_stream_bytes_per_s = 21'000'000'000};
  p.notes["control_hop_ns"] = {"measured: ipc, 4 KiB", false, 0, 0};
  const std::string text = CostParamsToYaml(p);
  const CostParams back = ParseCostParams(text, "mem", CostParams{});
  EXPECT_EQ(back, p);
  EXPECT_EQ(CostParamsToYaml(back), text);
  // Every figure is in the file, so the base does not matter.
  EXPECT_EQ(ParseCostParams(text, "mem", CostParamsForChip(topology::LpuV1())), p);
}

TEST(CostParamsTest, MissingFiguresComeFromTheBase) {
  const CostParams base = CostParamsForChip(topology::LpuV1());
  const CostParams p = ParseCostParams(
      "format: lockstep-cost-params/1\nfigures:\n  matrix_fill_ns: 300\n  link_efficiency: "
      "{value: 0.5, source: guess}\n",
      "mem", base);
  EXPECT_EQ(p.chip.matrix_fill_ns, 300);
  EXPECT_EQ(p.link.link_efficiency, 0.5);
  EXPECT_EQ(p.notes.at("link_efficiency").source, "guess");
  EXPECT_EQ(p.notes.count("matrix_fill_ns"), 0u);  // a bare number has no source
  EXPECT_EQ(p.chip.weight_stream_bytes_per_s, base.chip.weight_stream_bytes_per_s);
  EXPECT_EQ(p.name, "lpu-v1");
}

TEST(CostParamsTest, BadFilesNameLineAndField) {
  const std::string head = "format: lockstep-cost-params/1\nfigures:\n";
  EXPECT_THAT(ParseError(head + "  matrix_fil_ns: 3\n"),
              HasSubstr("p.yaml:3: figures.matrix_fil_ns: unknown figure (figures: "));
  EXPECT_THAT(ParseError(head + "  link_efficiency: 1.5\n"),
              HasSubstr("p.yaml:3: figures.link_efficiency: must be in (0, 1]"));
  EXPECT_THAT(ParseError(head + "  op_overhead_ns: fast\n"),
              HasSubstr("p.yaml:3: figures.op_overhead_ns: expected a number"));
  EXPECT_THAT(ParseError(head + "  op_overhead_ns: 2.5\n"),
              HasSubstr("figures.op_overhead_ns: must be a whole number"));
  EXPECT_THAT(ParseError(head + "  op_overhead_ns: -4\n"), HasSubstr("must be >= 0"));
  EXPECT_THAT(ParseError(head + "  op_overhead_ns: {source: x}\n"),
              HasSubstr("figures.op_overhead_ns.value: missing"));
  EXPECT_THAT(ParseError("format: lockstep-topology/1\nfigures: {}\n"),
              HasSubstr("p.yaml:1: format: must be lockstep-cost-params/1"));
  EXPECT_THAT(ParseError("format: lockstep-cost-params/1\n"), HasSubstr("figures: missing"));
  EXPECT_THAT(ParseError(head + "  a: [\n"), HasSubstr("YAML syntax error"));
  EXPECT_THAT(ParseError("format: lockstep-cost-params/1\nfigures: {}\nextra: 1\n"),
              HasSubstr("p.yaml:3: extra: unknown field"));
}

TEST(CostParamsTest, ChipSpecFiguresOverrideTheBuiltIns) {
  topology::ChipSpec chip = topology::LpuV1();
  chip.name = "host-core";
  chip.cost_params = {{"weight_stream_bytes_per_s", "12500000000"},
                      {"control_hops", "2"},
                      {"link_efficiency", "1"}};
  const CostParams p = CostParamsForChip(chip);
  EXPECT_EQ(p.chip.weight_stream_bytes_per_s, 12'500'000'000);
  EXPECT_EQ(p.runtime.control_hops, 2);
  EXPECT_EQ(p.link.link_efficiency, 1.0);
  EXPECT_EQ(CostParamsFor(chip), p.chip);
  EXPECT_EQ(LinkCostParamsFor(chip), p.link);
  // A generic chip otherwise.
  EXPECT_EQ(p.chip.matrix_fill_ns, ChipCostParams{}.matrix_fill_ns);
  chip.cost_params = {{"matrix_fill", "3"}};
  try {
    CostParamsForChip(chip);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()),
                HasSubstr("chip spec 'host-core': cost_params.matrix_fill: unknown figure"));
  }
  chip.cost_params = {{"memory_efficiency", "0"}};
  EXPECT_THROW(CostParamsForChip(chip), Error);
}

// The shipped lpu-v1 file is the built-in figures, notes included: the cost model and the file
// cannot drift apart.
TEST(CostParamsTest, ShippedLpuV1FileIsTheBuiltInFigures) {
  const CostParams shipped = LoadCostParams(
      (kSource / "partition" / "params" / "lpu-v1.yaml").string(), topology::LpuV1());
  const CostParams builtin = CostParamsForChip(topology::LpuV1());
  EXPECT_EQ(shipped.chip, builtin.chip);
  EXPECT_EQ(shipped.link, builtin.link);
  EXPECT_EQ(shipped.runtime, builtin.runtime);
  for (std::string_view name : CostFigureNames()) {
    ASSERT_TRUE(shipped.notes.count(std::string(name))) << name << " has no source in the file";
    EXPECT_FALSE(shipped.notes.at(std::string(name)).source.empty()) << name;
  }
  EXPECT_TRUE(shipped.notes.at("weight_stream_bytes_per_s").fitted);
  // The only fitted figure; every fixed term is cited or derived.
  int fitted = 0;
  for (const auto& [name, note] : shipped.notes) fitted += note.fitted;
  EXPECT_EQ(fitted, 1);
}

TEST(CostParamsTest, APlanMadeWithAFileEmbedsIt) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("cost-params-test-" + std::to_string(::getpid()) + ".yaml");
  CostParams p = CostParamsForChip(topology::LpuV1());
  p.name = "slow-lab";
  p.chip.matrix_fill_ns = 999;
  p.link.collective_step_overhead_ns = 555;
  p.runtime.control_hops = 2;
  p.runtime.control_hop_ns = 70'000;
  p.runtime.shared_weight_stream_bytes_per_s = 12'345'678'901;  // carried into the plan file
  SaveCostParams(file.string(), p);
  const CostParams read = LoadCostParams(file.string(), topology::LpuV1());
  std::filesystem::remove(file);
  ASSERT_EQ(read, p);

  PlanOptions o;
  o.workload.dtype = Dtype::kInt8;
  o.chip_params = read.chip;
  o.link_params = read.link;
  o.runtime_params = read.runtime;
  o.cost_params_name = read.name;
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  const Plan plan = MakePlan(Example("llama-2-7b"), rack, o);
  EXPECT_EQ(plan.chip_params, p.chip);
  EXPECT_EQ(plan.link_params, p.link);
  EXPECT_EQ(plan.runtime_params, p.runtime);
  EXPECT_EQ(plan.cost_params_name, "slow-lab");
  const Plan back = ParsePlan(SerializePlan(plan), "mem");
  EXPECT_EQ(back, plan);
  EXPECT_THAT(PlanToJson(plan), HasSubstr("\"name\": \"slow-lab\""));
  EXPECT_EQ(RuntimeTokenNs(plan), 140'000);
  // A run's step: the schedule's step plus the runtime's terms; with the chips' compute over
  // shared cores longer than the schedule's step, that compute bounds it.
  Plan shared = plan;
  shared.runtime_params.shared_weight_stream_bytes_per_s = 0;  // each chip its own, until below
  shared.runtime_params.cores = 0;
  EXPECT_EQ(RuntimeStepNs(shared, 1'000'000, 8'000'000), 1'140'000);  // a core per chip
  shared.runtime_params.cores = 2;
  EXPECT_EQ(RuntimeStepNs(shared, 1'000'000, 8'000'000), 4'140'000);
  EXPECT_EQ(RuntimeStepNs(shared, 5'000'000, 8'000'000), 5'140'000);
  // Cores that share one memory stream weights together at less than the sum of their own
  // rates: a step is at least all the compute at the shared rate (8 ms x 10 / 16 GB/s = 5 ms).
  shared.chip_params.weight_stream_bytes_per_s = 10'000'000'000;
  shared.runtime_params.shared_weight_stream_bytes_per_s = 16'000'000'000;
  EXPECT_EQ(RuntimeStepNs(shared, 1'000'000, 8'000'000), 5'140'000);
  EXPECT_EQ(RuntimeStepNs(shared, 6'000'000, 8'000'000), 6'140'000);  // the schedule's longer
  shared.runtime_params.shared_weight_stream_bytes_per_s = 0;         // none shared
  EXPECT_EQ(RuntimeStepNs(shared, 1'000'000, 8'000'000), 4'140'000);
  EXPECT_THROW(RuntimeStepNs(shared, -1, 0), Error);
  // The slower fills are priced: the same plan with the built-in figures is faster.
  PlanOptions builtin;
  builtin.workload = o.workload;
  EXPECT_LT(MakePlan(Example("llama-2-7b"), rack, builtin).predicted.token_latency_ns,
            plan.predicted.token_latency_ns);
}

TEST(CostParamsTest, APlanOnAMeasuredChipUsesItsFigures) {
  topology::ChipSpec chip = topology::LpuV1();
  chip.name = "host-core";
  chip.cost_params = {{"control_hops", "2"}, {"control_hop_ns", "80000"}, {"op_overhead_ns", "7"}};
  topology::Topology topo = topology::GenerateNode(chip);
  PlanOptions o;
  o.workload.dtype = Dtype::kFp16;
  const Plan plan = MakePlan(Example("tiny-llama"), topo, o);
  EXPECT_EQ(plan.chip_params.op_overhead_ns, 7);
  EXPECT_EQ(plan.runtime_params.control_hop_ns, 80'000);
  EXPECT_EQ(plan.cost_params_name, "host-core");
  EXPECT_EQ(ParsePlan(SerializePlan(plan), "mem"), plan);
}

}  // namespace
}  // namespace lockstep::partition
