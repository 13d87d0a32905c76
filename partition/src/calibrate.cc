#include "lockstep/partition/calibrate.h"

#include <algorithm>
#include <cmath>

#include "lockstep/common/error.h"

namespace lockstep::partition {
namespace {

struct Problem {
  const std::vector<Observation>* observations = nullptr;
  std::vector<size_t> use;  // indices of the observations in the fit
  CostParams base;
  std::vector<FreeFigure> free;
};

CostParams WithFigures(const Problem& p, const std::vector<double>& theta) {
  CostParams c = p.base;
  for (size_t j = 0; j < p.free.size(); ++j) SetCostFigure(c, p.free[j].name, std::exp(theta[j]));
  return c;
}

std::vector<double> Residuals(const Problem& p, const std::vector<double>& theta) {
  const CostParams c = WithFigures(p, theta);
  std::vector<double> r;
  for (size_t i : p.use) {
    const Observation& o = (*p.observations)[i];
    r.push_back(std::log(static_cast<double>(PredictTokenNs(o, c)) / o.measured_token_ns));
  }
  return r;
}

double SumSquares(const std::vector<double>& r) {
  double s = 0;
  for (double x : r) s += x * x;
  return s;
}

// Solves A x = b (n x n, row-major) by Gaussian elimination with partial pivoting. False when
// singular.
bool Solve(std::vector<double> a, std::vector<double> b, size_t n, std::vector<double>& x) {
  for (size_t c = 0; c < n; ++c) {
    size_t pivot = c;
    for (size_t r = c + 1; r < n; ++r) {
      if (std::fabs(a[r * n + c]) > std::fabs(a[pivot * n + c])) pivot = r;
    }
    if (std::fabs(a[pivot * n + c]) < 1e-300) return false;
    if (pivot != c) {
      for (size_t k = 0; k < n; ++k) std::swap(a[c * n + k], a[pivot * n + k]);
      std::swap(b[c], b[pivot]);
    }
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r * n + c] / a[c * n + c];
      for (size_t k = c; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
      b[r] -= f * b[c];
    }
  }
  x.assign(n, 0);
  for (size_t c = n; c-- > 0;) {
    double s = b[c];
    for (size_t k = c + 1; k < n; ++k) s -= a[c * n + k] * x[k];
    x[c] = s / a[c * n + c];
  }
  return true;
}

struct Solution {
  std::vector<double> theta;
  double sum_squares = 0;
  int iterations = 0;
};

// Levenberg-Marquardt on log figures within [log lower, log upper].
Solution Minimize(const Problem& p, const FitOptions& options) {
  const size_t k = p.free.size();
  std::vector<double> lo(k), hi(k), theta(k);
  for (size_t j = 0; j < k; ++j) {
    lo[j] = std::log(p.free[j].lower);
    hi[j] = std::log(p.free[j].upper);
    const double start = GetCostFigure(p.base, p.free[j].name);
    theta[j] = std::clamp(start > 0 ? std::log(start) : 0.5 * (lo[j] + hi[j]), lo[j], hi[j]);
  }
  std::vector<double> r = Residuals(p, theta);
  double s = SumSquares(r);
  double lambda = 1e-3;
  Solution out;
  for (int it = 1; it <= options.max_iterations; ++it) {
    out.iterations = it;
    if (s < 1e-24) return {theta, s, it};
    // Jacobian by forward (or, at the upper bound, backward) differences. An integer figure's
    // step moves it by at least two whole units, else rounding hides the change.
    const size_t m = r.size();
    std::vector<double> jac(m * k);
    for (size_t j = 0; j < k; ++j) {
      double h = options.difference_step;
      if (IsIntegerCostFigure(p.free[j].name)) {
        h = std::max(h, 2.0 * std::log1p(1.0 / std::max(1.0, std::exp(theta[j]))));
      }
      std::vector<double> t = theta;
      t[j] = theta[j] + h <= hi[j] ? theta[j] + h : theta[j] - h;
      const double dt = t[j] - theta[j];
      const std::vector<double> rj = Residuals(p, t);
      for (size_t i = 0; i < m; ++i) jac[i * k + j] = (rj[i] - r[i]) / dt;
    }
    std::vector<double> jtj(k * k, 0), g(k, 0);
    for (size_t i = 0; i < m; ++i) {
      for (size_t a = 0; a < k; ++a) {
        g[a] += jac[i * k + a] * r[i];
        for (size_t b = 0; b < k; ++b) jtj[a * k + b] += jac[i * k + a] * jac[i * k + b];
      }
    }
    double gmax = 0;
    for (size_t a = 0; a < k; ++a) {
      // A figure pressed against a bound, pushed further out, has no gradient to follow.
      const bool blocked = (theta[a] <= lo[a] && g[a] > 0) || (theta[a] >= hi[a] && g[a] < 0);
      if (!blocked) gmax = std::max(gmax, std::fabs(g[a]));
    }
    if (gmax < 1e-14) return {theta, s, it};
    bool improved = false;
    while (!improved) {
      std::vector<double> a = jtj, rhs(k), step;
      for (size_t d = 0; d < k; ++d) {
        a[d * k + d] += lambda * (jtj[d * k + d] + 1e-12);
        rhs[d] = -g[d];
      }
      if (!Solve(a, rhs, k, step)) {
        lambda *= 10;
      } else {
        std::vector<double> t(k);
        double moved = 0;
        for (size_t d = 0; d < k; ++d) {
          t[d] = std::clamp(theta[d] + step[d], lo[d], hi[d]);
          moved = std::max(moved, std::fabs(t[d] - theta[d]));
        }
        const std::vector<double> rt = Residuals(p, t);
        const double st = SumSquares(rt);
        if (st < s) {
          const double gain = s - st;
          theta = t;
          r = rt;
          const double previous = s;
          s = st;
          lambda = std::max(lambda / 3, 1e-12);
          improved = true;
          if (gain <= options.tolerance * previous && moved < options.step_tolerance) {
            return {theta, s, it};
          }
        } else {
          lambda *= 4;
        }
        if (moved < 1e-12 && !improved) {
          // The clamped step no longer moves: a minimum at the bounds.
          return {theta, s, it};
        }
      }
      // No step along the gradient lowers the sum at the predictions' whole-ns resolution:
      // this is the minimum.
      if (lambda > 1e12) return {theta, s, it};
    }
  }
  throw InvalidInput("the fit did not converge in " + std::to_string(options.max_iterations) +
                     " iterations (rms log error " + std::to_string(std::sqrt(s / r.size())) +
                     "); nothing written: give tighter bounds, fewer free figures or more varied "
                     "observations");
}

}  // namespace

int64_t PredictTokenNs(const Observation& o, const CostParams& params) {
  PlanOptions options = o.options;
  options.chip_params = params.chip;
  options.link_params = params.link;
  options.runtime_params = params.runtime;
  try {
    const Plan plan = MakePlan(o.spec, o.topology, options);
    return plan.predicted.token_latency_ns + RuntimeTokenNs(plan);
  } catch (const Error& e) {
    throw Error(e.code(), "observation '" + o.name + "': " + e.what());
  }
}

FitResult FitCostFigures(const std::vector<Observation>& observations, const CostParams& base,
                         const std::vector<FreeFigure>& free, const FitOptions& options) {
  if (free.empty()) throw InvalidInput("no figure to fit: name at least one");
  for (size_t j = 0; j < free.size(); ++j) {
    const FreeFigure& f = free[j];
    if (!IsCostFigure(f.name)) {
      std::string names;
      for (std::string_view n : CostFigureNames())
        names += (names.empty() ? "" : ", ") + std::string(n);
      throw InvalidInput("unknown cost figure '" + f.name + "' (figures: " + names + ")");
    }
    for (size_t i = 0; i < j; ++i) {
      if (free[i].name == f.name) throw InvalidInput("figure " + f.name + " is given twice");
    }
    if (!(f.lower > 0 && f.lower <= f.upper && std::isfinite(f.upper))) {
      throw InvalidInput("figure " + f.name + ": bounds must be 0 < lower <= upper, got [" +
                         std::to_string(f.lower) + ", " + std::to_string(f.upper) + "]");
    }
  }
  if (observations.size() < free.size()) {
    throw InvalidInput(std::to_string(observations.size()) + " observation(s) cannot determine " +
                       std::to_string(free.size()) +
                       " free figure(s): give at least as many observations as figures to fit");
  }
  for (size_t i = 0; i < observations.size(); ++i) {
    if (!(observations[i].measured_token_ns > 0) ||
        !std::isfinite(observations[i].measured_token_ns)) {
      throw InvalidInput("observation '" + observations[i].name +
                         "': the measured token time must be > 0");
    }
  }
  Problem problem;
  problem.observations = &observations;
  problem.base = base;
  problem.free = free;
  for (size_t i = 0; i < observations.size(); ++i) problem.use.push_back(i);
  const Solution best = Minimize(problem, options);

  FitResult result;
  result.params = WithFigures(problem, best.theta);
  result.iterations = best.iterations;
  for (size_t j = 0; j < free.size(); ++j) {
    FittedFigure f;
    f.name = free[j].name;
    f.value = GetCostFigure(result.params, f.name);
    f.lower = free[j].lower;
    f.upper = free[j].upper;
    f.at_bound = f.value <= f.lower * 1.001 || f.value >= f.upper / 1.001;
    result.figures.push_back(f);
    CostFigureNote& note = result.params.notes[f.name];
    note.fitted = true;
    note.lower = f.lower;
    note.upper = f.upper;
  }
  double sum = 0;
  for (const Observation& o : observations) {
    ObservationResult r;
    r.name = o.name;
    r.measured_token_ns = o.measured_token_ns;
    r.predicted_token_ns = static_cast<double>(PredictTokenNs(o, result.params));
    r.log_residual = std::log(r.predicted_token_ns / o.measured_token_ns);
    sum += r.log_residual * r.log_residual;
    result.observations.push_back(r);
  }
  result.rms_log_error = std::sqrt(sum / static_cast<double>(observations.size()));
  if (!options.leave_one_out) {
    result.leave_one_out_note = "not asked for";
  } else if (observations.size() <= free.size()) {
    result.leave_one_out_note = "needs more observations (" + std::to_string(observations.size()) +
                                ") than free figures (" + std::to_string(free.size()) + ")";
  } else {
    for (size_t out = 0; out < observations.size(); ++out) {
      Problem without = problem;
      without.base = result.params;  // start from the full fit: same basin, fewer iterations
      without.use.clear();
      for (size_t i = 0; i < observations.size(); ++i) {
        if (i != out) without.use.push_back(i);
      }
      const Solution s = Minimize(without, options);
      const double predicted =
          static_cast<double>(PredictTokenNs(observations[out], WithFigures(without, s.theta)));
      result.observations[out].leave_one_out_error =
          predicted / observations[out].measured_token_ns - 1;
    }
  }
  return result;
}

}  // namespace lockstep::partition
