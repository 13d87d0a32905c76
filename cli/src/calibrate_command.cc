// `lockstep calibrate`: fit named cost figures to observed decode speeds (an observations
// JSON list) and write a cost-parameters file; or, with --host, measure this machine as a chip
// (calibrate_host.cc).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/partition/calibrate.h"
#include "lockstep/partition/cost_params.h"
#include "topology_arg.h"

namespace lockstep::cli {
namespace {

namespace fs = std::filesystem;

// One entry of the observations file, read with errors that name the entry and field.
class EntryReader {
 public:
  EntryReader(const std::string& file, size_t index, const nlohmann::json& j) : file_(file), j_(j) {
    where_ = file + ": observations[" + std::to_string(index) + "]";
    if (!j.is_object()) Fail("", "expected an object with model, topology, ... fields");
    if (j.contains("name") && j["name"].is_string())
      where_ += " (" + j["name"].get<std::string>() + ")";
    for (const auto& [key, value] : j.items()) {
      static const std::vector<std::string> known = {"name",
                                                     "source",
                                                     "model",
                                                     "topology",
                                                     "spare_nodes",
                                                     "chip",
                                                     "dtype",
                                                     "batch",
                                                     "context",
                                                     "objective",
                                                     "tp",
                                                     "pp",
                                                     "tokens_per_s_per_user",
                                                     "step_time_ns"};
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string list;
        for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
        Fail(key, "unknown field (fields: " + list + ")");
      }
    }
  }

  [[noreturn]] void Fail(const std::string& field, const std::string& what) const {
    throw InvalidInput(where_ + (field.empty() ? "" : ": " + field) + ": " + what);
  }

  bool Has(const std::string& field) const { return j_.contains(field); }

  std::string String(const std::string& field, std::optional<std::string> fallback = {}) const {
    if (!j_.contains(field)) {
      if (fallback) return *fallback;
      Fail(field, "missing");
    }
    if (!j_[field].is_string() || j_[field].get<std::string>().empty()) {
      Fail(field, "expected a non-empty string");
    }
    return j_[field].get<std::string>();
  }

  int64_t Integer(const std::string& field, std::optional<int64_t> fallback, int64_t least) const {
    if (!j_.contains(field)) {
      if (fallback) return *fallback;
      Fail(field, "missing");
    }
    if (!j_[field].is_number_integer()) Fail(field, "expected a whole number");
    const int64_t v = j_[field].get<int64_t>();
    if (v < least)
      Fail(field, "must be >= " + std::to_string(least) + ", got " + std::to_string(v));
    return v;
  }

  double Positive(const std::string& field) const {
    if (!j_[field].is_number()) Fail(field, "expected a number");
    const double v = j_[field].get<double>();
    if (!(v > 0) || !std::isfinite(v)) Fail(field, "must be > 0");
    return v;
  }

  // A path relative to the observations file's folder.
  std::string Path(const std::string& field) const {
    const std::string p = String(field);
    const fs::path rel = fs::path(file_).parent_path() / p;
    return fs::path(p).is_absolute() || !fs::exists(rel) ? p : rel.string();
  }

 private:
  std::string file_;
  std::string where_;
  const nlohmann::json& j_;
};

// The observations of `file`; `sources` gets each one's "source" text (empty when none).
std::vector<partition::Observation> ReadObservations(const std::string& file,
                                                     std::vector<std::string>& sources) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot read observations file " + file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw InvalidInput(file + ": not JSON: " + e.what());
  }
  if (!j.is_array()) throw InvalidInput(file + ": expected a JSON list of observations");
  if (j.empty()) throw InvalidInput(file + ": the list of observations is empty");
  std::vector<partition::Observation> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const EntryReader r(file, i, j[i]);
    partition::Observation o;
    o.name = r.String("name", "observation " + std::to_string(i));
    sources.push_back(r.Has("source") ? r.String("source") : "");
    const std::string model = r.Path("model");
    try {
      o.spec = partition::LoadModelSpec(model);
    } catch (const Error& e) {
      r.Fail("model", "unknown model '" + model + "' (" + e.what() + ")");
    }
    const std::string chip_name = r.String("chip", "lpu-v1");
    std::optional<topology::ChipSpec> chip = topology::ChipPreset(chip_name);
    if (!chip) r.Fail("chip", "unknown chip preset '" + chip_name + "' (valid: lpu-v1)");
    const std::string topo = r.String("topology");
    const int spare = static_cast<int>(r.Integer("spare_nodes", 1, 0));
    try {
      const bool named = topo == "node" || topo == "rack" || topo.rfind("racks:", 0) == 0;
      o.topology = ResolveTopology(named ? topo : r.Path("topology"), *chip, spare);
    } catch (const std::exception& e) {
      r.Fail("topology", e.what());
    }
    const std::string dtype = r.String("dtype");
    const std::optional<Dtype> d = ParseDtype(dtype);
    if (!d) r.Fail("dtype", "unknown dtype '" + dtype + "' (valid: fp32, fp16, bf16, int8, fp8)");
    o.options.workload.dtype = *d;
    o.options.workload.batch = r.Integer("batch", std::nullopt, 1);
    o.options.workload.context = r.Integer("context", std::nullopt, 1);
    const std::string objective = r.String("objective", "latency");
    const std::optional<partition::Objective> obj = partition::ParseObjective(objective);
    if (!obj) r.Fail("objective", "must be latency or throughput, got '" + objective + "'");
    o.options.objective = *obj;
    if (r.Has("tp")) o.options.tp = static_cast<int>(r.Integer("tp", std::nullopt, 1));
    if (r.Has("pp")) o.options.pp = static_cast<int>(r.Integer("pp", std::nullopt, 1));
    const bool rate = r.Has("tokens_per_s_per_user"), step = r.Has("step_time_ns");
    if (rate == step) {
      r.Fail("", "give exactly one of tokens_per_s_per_user or step_time_ns (the measurement)");
    }
    o.measured_token_ns =
        rate ? 1e9 / r.Positive("tokens_per_s_per_user") : r.Positive("step_time_ns");
    out.push_back(std::move(o));
  }
  return out;
}

// "name" or "name=LOWER:UPPER".
partition::FreeFigure ParseFree(const std::string& text, const partition::CostParams& base) {
  partition::FreeFigure f;
  const size_t eq = text.find('=');
  f.name = text.substr(0, eq);
  if (!partition::IsCostFigure(f.name)) {
    std::string names;
    for (std::string_view n : partition::CostFigureNames()) {
      names += (names.empty() ? "" : ", ") + std::string(n);
    }
    throw UsageError("--fit: unknown cost figure '" + f.name + "' (figures: " + names + ")");
  }
  if (eq != std::string::npos) {
    const std::string range = text.substr(eq + 1);
    const size_t colon = range.find(':');
    try {
      if (colon == std::string::npos) throw std::invalid_argument(range);
      size_t used = 0;
      f.lower = std::stod(range.substr(0, colon), &used);
      if (used != colon) throw std::invalid_argument(range);
      f.upper = std::stod(range.substr(colon + 1), &used);
      if (used != range.size() - colon - 1) throw std::invalid_argument(range);
    } catch (const std::exception&) {
      throw UsageError("--fit " + text + ": bounds are NAME=LOWER:UPPER, e.g. " + f.name +
                       "=1e11:8e13");
    }
    return f;
  }
  // Bounds recorded in the base's notes, else two decades either side of its value.
  auto it = base.notes.find(f.name);
  if (it != base.notes.end() && it->second.upper > 0) {
    f.lower = it->second.lower;
    f.upper = it->second.upper;
    return f;
  }
  const double v = partition::GetCostFigure(base, f.name);
  if (!(v > 0)) {
    throw UsageError("--fit " + f.name + ": its value is " + std::to_string(v) +
                     "; give bounds: " + f.name + "=LOWER:UPPER");
  }
  f.lower = v / 100;
  f.upper = v * 100;
  return f;
}

std::string Fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string Sci(double v) {
  std::ostringstream s;
  s << std::setprecision(4) << v;
  return s.str();
}

int Calibrate(const std::vector<std::string>& args, Context& ctx) {
  if (std::find(args.begin(), args.end(), "--host") != args.end()) return CalibrateHost(args, ctx);
  po::options_description opts("options");
  std::string observations, base_file, out, name, chip_name = "lpu-v1";
  std::vector<std::string> fit;
  opts.add_options()("observations", po::value<std::string>(&observations),
                     "a JSON list of observations: {name, source, model, topology, spare_nodes, "
                     "chip, dtype, batch, context, objective, tp, pp, and tokens_per_s_per_user "
                     "or step_time_ns}; paths relative to the file")(
      "fit", po::value<std::vector<std::string>>(&fit),
      "a cost figure to fit, NAME or NAME=LOWER:UPPER (repeatable); the others keep the base's "
      "values")("cost-params", po::value<std::string>(&base_file),
                "start from this cost-parameters file (default: the chip's built-in figures)")(
      "chip", po::value<std::string>(&chip_name)->default_value("lpu-v1"),
      "the chip the figures are for")("name", po::value<std::string>(&name),
                                      "the name written in the file (default: the base's)")(
      "output,o", po::value<std::string>(&out), "write the cost-parameters file here");
  po::positional_options_description pos;
  po::variables_map vm;
  const std::string usage =
      "lockstep calibrate --observations OBS.json --fit FIGURE[=LO:HI]... [--cost-params BASE] "
      "-o OUT.yaml [--json]\n"
      "lockstep calibrate --host [--transport ipc|tcp] -o HOST.yaml [--json]  (see: lockstep "
      "calibrate --host --help)\n\n"
      "Fits cost figures to measurements: least squares on the log error of each observation's\n"
      "predicted token time (the partitioner's plan for it), within each figure's bounds; prints\n"
      "each figure (value, bounds), each observation's residual and its leave-one-out error\n"
      "(refit without it), and writes the figures to a cost-parameters file for plan, schedule,\n"
      "simulate and run (--cost-params). With fewer observations than figures, or no\n"
      "convergence, it says so and writes nothing.";
  if (!ParseOrHelp(args, usage, opts, pos, vm)) return 0;
  if (out.empty()) throw UsageError("-o FILE is required (see: lockstep calibrate --help)");
  if (observations.empty()) throw UsageError("--observations FILE is required");
  if (fit.empty()) throw UsageError("--fit FIGURE is required: name the figures to fit");
  std::optional<topology::ChipSpec> chip = topology::ChipPreset(chip_name);
  if (!chip) throw UsageError("--chip: unknown preset '" + chip_name + "' (valid: lpu-v1)");
  partition::CostParams base = base_file.empty() ? partition::CostParamsForChip(*chip)
                                                 : partition::LoadCostParams(base_file, *chip);
  std::vector<partition::FreeFigure> free;
  for (const std::string& f : fit) free.push_back(ParseFree(f, base));
  std::vector<std::string> sources;
  const std::vector<partition::Observation> obs = ReadObservations(observations, sources);
  partition::FitResult r = partition::FitCostFigures(obs, base, free);
  if (!name.empty()) r.params.name = name;
  std::string names;
  for (size_t i = 0; i < obs.size(); ++i) {
    names +=
        (names.empty() ? "" : "; ") + obs[i].name + (sources[i].empty() ? "" : ": " + sources[i]);
  }
  for (const partition::FittedFigure& f : r.figures) {
    partition::CostFigureNote& note = r.params.notes[f.name];
    note.source = "fitted by lockstep calibrate to " + std::to_string(obs.size()) +
                  " observation(s) of " + fs::path(observations).filename().string() +
                  ", rms log error " + Fixed(r.rms_log_error, 4) + " (" + names + ")";
  }
  partition::SaveCostParams(out, r.params);
  ctx.log->info("wrote {}", out);

  if (ctx.json) {
    nlohmann::json figures = nlohmann::json::array(), rows = nlohmann::json::array();
    for (const partition::FittedFigure& f : r.figures) {
      figures.push_back({{"name", f.name},
                         {"value", f.value},
                         {"lower", f.lower},
                         {"upper", f.upper},
                         {"at_bound", f.at_bound}});
    }
    for (const partition::ObservationResult& o : r.observations) {
      nlohmann::json row = {{"name", o.name},
                            {"measured_token_ns", o.measured_token_ns},
                            {"predicted_token_ns", o.predicted_token_ns},
                            {"error", o.predicted_token_ns / o.measured_token_ns - 1},
                            {"log_residual", o.log_residual}};
      row["leave_one_out_error"] =
          o.leave_one_out_error ? nlohmann::json(*o.leave_one_out_error) : nlohmann::json(nullptr);
      rows.push_back(row);
    }
    PrintJson({{"output", out},
               {"iterations", r.iterations},
               {"rms_log_error", r.rms_log_error},
               {"figures", figures},
               {"observations", rows},
               {"leave_one_out_note", r.leave_one_out_note}});
    return 0;
  }
  std::cout << "fitted " << r.figures.size() << " figure(s) to " << obs.size()
            << " observation(s) in " << r.iterations << " iteration(s); rms log error "
            << Fixed(r.rms_log_error, 4) << "\n\n"
            << std::left << std::setw(30) << "figure" << std::setw(14) << "value"
            << "bounds\n";
  for (const partition::FittedFigure& f : r.figures) {
    std::cout << std::left << std::setw(30) << f.name << std::setw(14) << Sci(f.value) << "["
              << Sci(f.lower) << ", " << Sci(f.upper) << "]" << (f.at_bound ? "  at a bound" : "")
              << "\n";
  }
  std::cout << "\n"
            << std::left << std::setw(24) << "observation" << std::right << std::setw(14)
            << "measured us" << std::setw(14) << "predicted us" << std::setw(10) << "error"
            << std::setw(16) << "leave-one-out\n";
  for (const partition::ObservationResult& o : r.observations) {
    std::cout << std::left << std::setw(24) << o.name << std::right << std::setw(14)
              << Fixed(o.measured_token_ns / 1e3, 1) << std::setw(14)
              << Fixed(o.predicted_token_ns / 1e3, 1) << std::setw(9)
              << Fixed(100 * (o.predicted_token_ns / o.measured_token_ns - 1), 2) << "%"
              << std::setw(15)
              << (o.leave_one_out_error ? Fixed(100 * *o.leave_one_out_error, 2) + "%"
                                        : std::string("n/a"))
              << "\n";
  }
  if (!r.leave_one_out_note.empty()) {
    std::cout << "leave-one-out: " << r.leave_one_out_note << "\n";
  }
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace

CommandGroup CalibrateCommand() {
  return {"calibrate", "fit cost figures to measurements and write a cost-parameters file",
          Calibrate};
}

}  // namespace lockstep::cli
