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
  f.chips_by_id[3] = {{{"compute", 1500000000}, {"step", 2000000000}}, 4};
  f.chips_by_id[1] = {{{"compute", 250000000}}, 4};
  f.links = {{1, 5, 3, 4096}, {3, 7, 1, 16}};
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
  EXPECT_TRUE(Has(t, "lockstep_chip_step_seconds_total{chip=\"3\",kind=\"compute\"} 1.5"));
  EXPECT_TRUE(Has(t, "lockstep_chip_step_seconds_total{chip=\"3\",kind=\"step\"} 2"));
  EXPECT_TRUE(Has(t, "lockstep_chip_step_seconds_total{chip=\"1\",kind=\"compute\"} 0.25"));
  EXPECT_TRUE(Has(t, "lockstep_chip_steps_total{chip=\"1\"} 4"));
  EXPECT_TRUE(Has(t, "lockstep_link_bytes_total{chip=\"1\",link=\"5\",peer=\"3\"} 4096"));
  EXPECT_TRUE(Has(t, "lockstep_link_bytes_total{chip=\"3\",link=\"7\",peer=\"1\"} 16"));
  EXPECT_TRUE(Has(t, "# TYPE lockstep_link_bytes_total counter"));
  // Chips in id order.
  EXPECT_LT(t.find("{chip=\"1\",kind=\"compute\"}"), t.find("{chip=\"3\",kind=\"compute\"}"));
  EXPECT_TRUE(Has(t, "# TYPE lockstep_time_to_first_token_seconds histogram"));
}

}  // namespace
}  // namespace lockstep::server
