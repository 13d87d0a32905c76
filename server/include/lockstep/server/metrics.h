// Metrics: what `GET /metrics` shows, in the Prometheus text format (version 0.0.4), every name
// prefixed `lockstep_`. The HTTP server records requests as they end and tokens as they go out;
// the coordinator's thread publishes the run's own figures (steps, each chip's step time by
// instruction kind, each chip's bytes by outgoing link, failovers) between steps. Thread-safe (one
// mutex); Render() is a consistent snapshot.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace lockstep::server {

// One chip's decode steps as its worker reports them.
struct ChipFigures {
  // Wall ns by instruction kind ("compute", "reduce", "send", "recv", "forward") and of the
  // whole step ("step"), summed over its decode steps.
  std::map<std::string, int64_t> step_ns;
  int64_t steps = 0;  // decode steps those sums are over
};

// The payload bytes chip `chip` put on its outgoing link `link` (to chip `peer`), every step.
struct LinkFigures {
  int64_t chip = 0, link = 0, peer = 0, bytes = 0;
};

// The run's figures as the coordinator counts them (coordinator::RunStats and failovers()).
struct RunFigures {
  int64_t steps = 0;
  int64_t decode_steps = 0;
  int64_t decode_wall_ns = 0;
  std::map<int64_t, ChipFigures> chips_by_id;  // chips with a stage, by chip id
  std::vector<LinkFigures> links;              // by chip, then link
  int64_t shard_bytes = 0;
  int64_t failovers = 0;
  int64_t chips = 0;
  int64_t slots = 0;
};

class Metrics {
 public:
  // Histogram buckets (seconds), as vLLM's for the same quantities.
  static constexpr std::array<double, 14> kTtftBuckets = {
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0};
  static constexpr std::array<double, 12> kItlBuckets = {0.001, 0.0025, 0.005, 0.01, 0.015, 0.02,
                                                         0.025, 0.05,   0.075, 0.1,  0.25,  0.5};

  // A request ended: outcome "stop", "length", "cancelled" (client gone), "rejected" (4xx before
  // admission), "full" (429), "failed" (the run failed).
  void Request(const std::string& outcome);
  void PromptTokens(int64_t n);
  void FirstToken(double seconds);  // time to first token of a request
  void NextToken(double seconds);   // time between two tokens of a request
  // Admitted requests without a token yet, and with one.
  void Queue(int64_t waiting, int64_t running);
  void Publish(const RunFigures& figures);

  std::string Render() const;

 private:
  struct Histogram {
    std::vector<int64_t> counts;  // per bucket (not cumulative), plus +Inf last
    double sum = 0;
    int64_t count = 0;
  };
  static void Observe(Histogram& h, const double* bounds, size_t n, double x);
  mutable std::mutex mu_;
  std::map<std::string, int64_t> requests_;
  int64_t prompt_tokens_ = 0, generation_tokens_ = 0;
  Histogram ttft_, itl_;
  int64_t waiting_ = 0, running_ = 0;
  RunFigures run_;
};

}  // namespace lockstep::server
