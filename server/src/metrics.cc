#include "lockstep/server/metrics.h"

#include <sstream>

namespace lockstep::server {
namespace {

// Prometheus floats: shortest round-trip form is not needed; %.9g keeps them exact enough.
std::string Num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

void Head(std::ostringstream& out, const std::string& name, const char* type, const char* help) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

}  // namespace

void Metrics::Observe(Histogram& h, const double* bounds, size_t n, double x) {
  if (h.counts.empty()) h.counts.assign(n + 1, 0);
  size_t i = 0;
  while (i < n && x > bounds[i]) ++i;
  ++h.counts[i];
  h.sum += x;
  ++h.count;
}

void Metrics::Request(const std::string& outcome) {
  std::lock_guard lock(mu_);
  ++requests_[outcome];
}

void Metrics::PromptTokens(int64_t n) {
  std::lock_guard lock(mu_);
  prompt_tokens_ += n;
}

void Metrics::FirstToken(double seconds) {
  std::lock_guard lock(mu_);
  ++generation_tokens_;
  Observe(ttft_, kTtftBuckets.data(), kTtftBuckets.size(), seconds);
}

void Metrics::NextToken(double seconds) {
  std::lock_guard lock(mu_);
  ++generation_tokens_;
  Observe(itl_, kItlBuckets.data(), kItlBuckets.size(), seconds);
}

void Metrics::Queue(int64_t waiting, int64_t running) {
  std::lock_guard lock(mu_);
  waiting_ = waiting;
  running_ = running;
}

void Metrics::Publish(const RunFigures& figures) {
  std::lock_guard lock(mu_);
  run_ = figures;
}

std::string Metrics::Render() const {
  std::lock_guard lock(mu_);
  std::ostringstream out;
  Head(out, "lockstep_requests_total", "counter",
       "Requests by outcome: stop, length, cancelled (client gone), rejected (4xx), full (429), "
       "failed.");
  for (const char* o : {"stop", "length", "cancelled", "rejected", "full", "failed"}) {
    const auto it = requests_.find(o);
    out << "lockstep_requests_total{outcome=\"" << o << "\"} "
        << (it == requests_.end() ? 0 : it->second) << "\n";
  }
  Head(out, "lockstep_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
  out << "lockstep_prompt_tokens_total " << prompt_tokens_ << "\n";
  Head(out, "lockstep_generation_tokens_total", "counter", "Generated tokens sent to clients.");
  out << "lockstep_generation_tokens_total " << generation_tokens_ << "\n";
  Head(out, "lockstep_requests_running", "gauge", "Admitted requests that have a token.");
  out << "lockstep_requests_running " << running_ << "\n";
  Head(out, "lockstep_requests_waiting", "gauge", "Admitted requests without a token yet.");
  out << "lockstep_requests_waiting " << waiting_ << "\n";
  auto histogram = [&](const std::string& name, const char* help, const Histogram& h,
                       const double* bounds, size_t n) {
    Head(out, name, "histogram", help);
    int64_t cumulative = 0;
    for (size_t i = 0; i <= n; ++i) {
      cumulative += h.counts.empty() ? 0 : h.counts[i];
      out << name << "_bucket{le=\"" << (i < n ? Num(bounds[i]) : "+Inf") << "\"} " << cumulative
          << "\n";
    }
    out << name << "_sum " << Num(h.sum) << "\n" << name << "_count " << h.count << "\n";
  };
  histogram("lockstep_time_to_first_token_seconds",
            "From a request's admission to its first token leaving the server.", ttft_,
            kTtftBuckets.data(), kTtftBuckets.size());
  histogram("lockstep_inter_token_latency_seconds", "Between two tokens of a request.", itl_,
            kItlBuckets.data(), kItlBuckets.size());
  Head(out, "lockstep_steps_total", "counter", "Steps the coordinator ran (prefill and decode).");
  out << "lockstep_steps_total " << run_.steps << "\n";
  Head(out, "lockstep_decode_steps_total", "counter", "Decode steps.");
  out << "lockstep_decode_steps_total " << run_.decode_steps << "\n";
  Head(out, "lockstep_decode_step_seconds_total", "counter",
       "Wall time of the decode steps on the coordinator.");
  out << "lockstep_decode_step_seconds_total " << Num(run_.decode_wall_ns / 1e9) << "\n";
  Head(out, "lockstep_chip_step_seconds_total", "counter",
       "A chip's decode steps (kind=\"step\") and their parts by instruction kind (wall time; a "
       "recv or forward is mostly waiting on its link), summed over its decode steps.");
  for (const auto& [chip, c] : run_.chips_by_id) {
    for (const auto& [kind, ns] : c.step_ns) {
      out << "lockstep_chip_step_seconds_total{chip=\"" << chip << "\",kind=\"" << kind << "\"} "
          << Num(ns / 1e9) << "\n";
    }
  }
  Head(out, "lockstep_chip_steps_total", "counter",
       "Decode steps a chip's step times are summed over (mean step = seconds / steps).");
  for (const auto& [chip, c] : run_.chips_by_id) {
    out << "lockstep_chip_steps_total{chip=\"" << chip << "\"} " << c.steps << "\n";
  }
  Head(out, "lockstep_link_bytes_total", "counter",
       "Payload bytes a chip put on an outgoing link (to chip peer), over every step.");
  for (const LinkFigures& l : run_.links) {
    out << "lockstep_link_bytes_total{chip=\"" << l.chip << "\",link=\"" << l.link << "\",peer=\""
        << l.peer << "\"} " << l.bytes << "\n";
  }
  Head(out, "lockstep_shard_bytes", "gauge", "Weight shard bytes shipped to the chips.");
  out << "lockstep_shard_bytes " << run_.shard_bytes << "\n";
  Head(out, "lockstep_failovers_total", "counter", "Chips replaced by spares.");
  out << "lockstep_failovers_total " << run_.failovers << "\n";
  Head(out, "lockstep_chips", "gauge", "Chips of the deployment.");
  out << "lockstep_chips " << run_.chips << "\n";
  Head(out, "lockstep_slots", "gauge", "Pipeline slots: requests that run at once.");
  out << "lockstep_slots " << run_.slots << "\n";
  return out.str();
}

}  // namespace lockstep::server
