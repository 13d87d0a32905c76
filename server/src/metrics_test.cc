#include "lockstep/server/metrics.h"

#include <gtest/gtest.h>

namespace lockstep::server {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(Metrics, RendersCountersGaugesAndCumulativeHistograms) {
  Metrics m;
  m.Request("length");
  m.Request("length");
  m.Request("full");
  m.PromptTokens(7);
  m.FirstToken(0.003);  // bucket 0.005
  m.NextToken(0.004);   // bucket 0.005
  m.NextToken(9.0);     // +Inf only
  m.Queue(1, 2);
  RunFigures f;
  f.steps = 12;
  f.failovers = 1;
  f.chip_step_ns = {{"compute", 1500000000}};
  m.Publish(f);
  const std::string t = m.Render();
  EXPECT_TRUE(Has(t, "lockstep_requests_total{outcome=\"length\"} 2")) << t;
  EXPECT_TRUE(Has(t, "lockstep_requests_total{outcome=\"full\"} 1"));
  EXPECT_TRUE(Has(t, "lockstep_requests_total{outcome=\"cancelled\"} 0"));
  EXPECT_TRUE(Has(t, "lockstep_prompt_tokens_total 7"));
  EXPECT_TRUE(Has(t, "lockstep_generation_tokens_total 3"));
  EXPECT_TRUE(Has(t, "lockstep_requests_waiting 1"));
  EXPECT_TRUE(Has(t, "lockstep_requests_running 2"));
  EXPECT_TRUE(Has(t, "lockstep_time_to_first_token_seconds_bucket{le=\"0.001\"} 0"));
  EXPECT_TRUE(Has(t, "lockstep_time_to_first_token_seconds_bucket{le=\"0.005\"} 1"));
  EXPECT_TRUE(Has(t, "lockstep_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1"));
  EXPECT_TRUE(Has(t, "lockstep_inter_token_latency_seconds_bucket{le=\"0.5\"} 1"));
  EXPECT_TRUE(Has(t, "lockstep_inter_token_latency_seconds_bucket{le=\"+Inf\"} 2"));
  EXPECT_TRUE(Has(t, "lockstep_inter_token_latency_seconds_count 2"));
  EXPECT_TRUE(Has(t, "lockstep_inter_token_latency_seconds_sum 9.004"));
  EXPECT_TRUE(Has(t, "lockstep_steps_total 12"));
  EXPECT_TRUE(Has(t, "lockstep_failovers_total 1"));
  EXPECT_TRUE(Has(t, "lockstep_chip_step_seconds_total{kind=\"compute\"} 1.5"));
  EXPECT_TRUE(Has(t, "# TYPE lockstep_time_to_first_token_seconds histogram"));
}

}  // namespace
}  // namespace lockstep::server
