// Calibration (issue #21): fits named cost figures (cost_params.h) to observed decode speeds.
//
// An observation is a setup the partitioner can plan — model, topology, workload, optional TP /
// stage overrides — and what was measured: tokens/s per user or the time of a decode step (one
// token of one sequence). The fit minimises the sum of squared log errors,
// sum_i log(predicted_i / measured_i)^2, over the free figures in log space (each kept within
// its bounds), by Levenberg-Marquardt with a finite-difference Jacobian. Log error weighs a 10%
// miss on a small model like a 10% miss on a large one, and log-space figures stay positive.
//
// A prediction is the partitioner's: MakePlan(...).predicted.token_latency_ns, which the
// compiled schedule reproduces (the cost model prices nothing the compiler does not charge).
//
// Pure function of its inputs (plans are deterministic); no I/O, no clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/partition/cost_params.h"
#include "lockstep/partition/plan.h"

namespace lockstep::partition {

struct Observation {
  std::string name;  // for messages and the report ("groq-llama-2-70b")
  ModelSpec spec;
  topology::Topology topology;
  // Workload, objective, --tp/--pp/layout overrides; its chip/link params are replaced by the
  // figures being fitted.
  PlanOptions options;
  // The measured token latency (one decode step of one sequence through every stage), ns:
  // 1e9 / tokens per second per user when that is what was published.
  double measured_token_ns = 0;
};

struct FreeFigure {
  std::string name;  // a cost figure (IsCostFigure)
  double lower = 0;  // bounds of the fit, > 0 (the fit works on logarithms)
  double upper = 0;
};

struct FitOptions {
  int max_iterations = 100;
  // Converged when an iteration improves the sum of squares by less than this fraction and the
  // step is below `step_tolerance` in log space.
  double tolerance = 1e-10;
  double step_tolerance = 1e-6;
  // Relative step of the finite differences (in log space). Predictions are whole nanoseconds,
  // so the step must move them by many ns.
  double difference_step = 1e-3;
  // Leave-one-out: refit without each observation and predict it (needs more observations
  // than free figures).
  bool leave_one_out = true;
};

struct FittedFigure {
  std::string name;
  double value = 0;
  double lower = 0, upper = 0;
  bool at_bound = false;  // within 0.1% of a bound: the data push it there
};

struct ObservationResult {
  std::string name;
  double measured_token_ns = 0;
  double predicted_token_ns = 0;
  double log_residual = 0;                    // log(predicted / measured)
  std::optional<double> leave_one_out_error;  // predicted without it / measured - 1
};

struct FitResult {
  CostParams params;  // the base with the fitted figures set (and noted as fitted)
  std::vector<FittedFigure> figures;
  std::vector<ObservationResult> observations;
  double rms_log_error = 0;
  int iterations = 0;
  // Why leave-one-out was not computed ("needs more observations than free figures"), if not.
  std::string leave_one_out_note;
};

// Fits `free` figures of `base` to `observations`. Throws Error (kInvalidInput) when there are
// fewer observations than free figures, a figure is unknown or given twice, a bound is not
// 0 < lower <= upper, or an observation cannot be planned (the message names it); and
// Error (kInvalidInput) "the fit did not converge in N iterations ..." when it does not
// converge. Nothing is returned then.
FitResult FitCostFigures(const std::vector<Observation>& observations, const CostParams& base,
                         const std::vector<FreeFigure>& free, const FitOptions& options = {});

// The token latency `params` predicts for `o`: its plan's token_latency_ns plus the runtime's
// terms (RuntimeTokenNs), as `lockstep run` predicts it.
int64_t PredictTokenNs(const Observation& o, const CostParams& params);

}  // namespace lockstep::partition
