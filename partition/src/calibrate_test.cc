#include "lockstep/partition/calibrate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"

namespace lockstep::partition {
namespace {

using ::testing::HasSubstr;

ModelSpec Example(const std::string& name) {
  return LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" / "models" / name);
}

// Setups whose predictions weigh the figures differently: tiny-llama (fills and hops dominate)
// at several degrees and contexts, llama-2-7b on a rack (weights dominate).
std::vector<Observation> Setups() {
  const topology::Topology node = topology::GenerateNode(topology::LpuV1());
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  std::vector<Observation> out;
  auto add = [&](const std::string& name, const std::string& model, const topology::Topology& t,
                 Dtype dtype, int64_t context, int tp, int pp) {
    Observation o;
    o.name = name;
    o.spec = Example(model);
    o.topology = t;
    o.options.workload.dtype = dtype;
    o.options.workload.context = context;
    o.options.tp = tp;
    o.options.pp = pp;
    out.push_back(std::move(o));
  };
  add("tiny-tp1", "tiny-llama", node, Dtype::kFp16, 512, 1, 1);
  add("tiny-tp4-long", "tiny-llama", node, Dtype::kFp16, 8192, 4, 1);
  add("tiny-2x4", "tiny-llama", node, Dtype::kFp16, 1024, 4, 2);
  add("7b-tp8", "llama-2-7b", rack, Dtype::kInt8, 4096, 8, 8);
  return out;
}

// The fit recovers known figures from observations made with them.
TEST(CalibrateTest, RecoversKnownFiguresFromSyntheticObservations) {
  CostParams truth = CostParamsForChip(topology::LpuV1());
  truth.chip.weight_stream_bytes_per_s = 1'700'000'000'000;
  truth.chip.matrix_fill_ns = 420;
  std::vector<Observation> obs = Setups();
  for (Observation& o : obs) o.measured_token_ns = static_cast<double>(PredictTokenNs(o, truth));

  const CostParams start = CostParamsForChip(topology::LpuV1());  // 3.04 TB/s, 150 ns
  const FitResult fit = FitCostFigures(
      obs, start, {{"weight_stream_bytes_per_s", 1e11, 8e13}, {"matrix_fill_ns", 1, 10'000}});
  ASSERT_EQ(fit.figures.size(), 2u);
  EXPECT_NEAR(fit.figures[0].value / 1.7e12, 1.0, 0.005);
  EXPECT_NEAR(fit.figures[1].value, 420, 2);
  EXPECT_FALSE(fit.figures[0].at_bound);
  EXPECT_LT(fit.rms_log_error, 1e-3);
  for (const ObservationResult& r : fit.observations) {
    EXPECT_NEAR(r.predicted_token_ns / r.measured_token_ns, 1.0, 2e-3) << r.name;
    ASSERT_TRUE(r.leave_one_out_error.has_value()) << r.name;
    EXPECT_LT(std::fabs(*r.leave_one_out_error), 0.01) << r.name;
  }
  EXPECT_TRUE(fit.leave_one_out_note.empty());
  // The written figures say they were fitted, with their bounds.
  EXPECT_TRUE(fit.params.notes.at("matrix_fill_ns").fitted);
  EXPECT_EQ(fit.params.notes.at("matrix_fill_ns").upper, 10'000);
  EXPECT_EQ(fit.params.chip.weight_stream_bytes_per_s,
            static_cast<int64_t>(GetCostFigure(fit.params, "weight_stream_bytes_per_s")));
}

// One observation determines one figure; leave-one-out then has nothing to leave out.
TEST(CalibrateTest, OneObservationFitsOneFigure) {
  CostParams truth = CostParamsForChip(topology::LpuV1());
  truth.chip.weight_stream_bytes_per_s = 2'500'000'000'000;
  std::vector<Observation> obs = {Setups()[3]};
  obs[0].measured_token_ns = static_cast<double>(PredictTokenNs(obs[0], truth));
  const FitResult fit = FitCostFigures(obs, CostParamsForChip(topology::LpuV1()),
                                       {{"weight_stream_bytes_per_s", 1e11, 8e13}});
  EXPECT_NEAR(fit.figures[0].value / 2.5e12, 1.0, 0.002);
  EXPECT_FALSE(fit.observations[0].leave_one_out_error.has_value());
  EXPECT_THAT(fit.leave_one_out_note,
              HasSubstr("needs more observations (1) than free figures (1)"));
}

TEST(CalibrateTest, RefusesWhatCannotBeFitted) {
  std::vector<Observation> obs = {Setups()[0]};
  obs[0].measured_token_ns = 30'000;
  const CostParams base = CostParamsForChip(topology::LpuV1());
  auto error = [&](const std::vector<Observation>& o, const std::vector<FreeFigure>& f,
                   FitOptions options = {}) -> std::string {
    try {
      FitCostFigures(o, base, f, options);
    } catch (const Error& e) {
      return e.what();
    }
    return "fitted";
  };
  EXPECT_THAT(error(obs, {{"matrix_fill_ns", 1, 1e4}, {"vector_fill_ns", 1, 1e4}}),
              HasSubstr("1 observation(s) cannot determine 2 free figure(s)"));
  EXPECT_THAT(error(obs, {{"matrix_fil_ns", 1, 1e4}}),
              HasSubstr("unknown cost figure 'matrix_fil_ns'"));
  EXPECT_THAT(error(obs, {{"matrix_fill_ns", 10, 1}}),
              HasSubstr("bounds must be 0 < lower <= upper"));
  EXPECT_THAT(error(obs, {}), HasSubstr("no figure to fit"));
  // A setup that cannot be planned is named.
  std::vector<Observation> bad = obs;
  bad[0].name = "too-big";
  bad[0].spec = Example("llama-2-70b");
  EXPECT_THAT(error(bad, {{"matrix_fill_ns", 1, 1e4}}), HasSubstr("observation 'too-big': "));
  // Far from the answer with one iteration allowed: no convergence, nothing returned.
  std::vector<Observation> far = Setups();
  CostParams truth = base;
  truth.chip.matrix_fill_ns = 5000;
  for (Observation& o : far) o.measured_token_ns = static_cast<double>(PredictTokenNs(o, truth));
  FitOptions one;
  one.max_iterations = 1;
  EXPECT_THAT(error(far, {{"matrix_fill_ns", 1, 1e5}}, one),
              HasSubstr("the fit did not converge in 1 iterations"));
}

}  // namespace
}  // namespace lockstep::partition
