#include "lockstep/partition/cost_params.h"

#include <yaml-cpp/yaml.h>

#include <array>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "lockstep/common/error.h"

namespace lockstep::partition {
namespace {

constexpr std::string_view kFormat = "lockstep-cost-params/1";

enum class Range { kEfficiency, kNonNegative, kHopLatency };

// Every figure: name, integer?, range. Order = file order.
constexpr std::array<std::pair<std::string_view, std::pair<bool, Range>>, 18> kFigures = {{
    {"matrix_efficiency", {false, Range::kEfficiency}},
    {"weight_stream_bytes_per_s", {true, Range::kNonNegative}},
    {"weight_stream_fraction", {false, Range::kEfficiency}},
    {"vector_ops_per_s", {true, Range::kNonNegative}},
    {"memory_efficiency", {false, Range::kEfficiency}},
    {"op_overhead_ns", {true, Range::kNonNegative}},
    {"matrix_fill_ns", {true, Range::kNonNegative}},
    {"vector_fill_ns", {true, Range::kNonNegative}},
    {"layer_sync_ns", {true, Range::kNonNegative}},
    {"link_efficiency", {false, Range::kEfficiency}},
    {"hop_latency_ns", {true, Range::kHopLatency}},
    {"collective_step_overhead_ns", {true, Range::kNonNegative}},
    {"control_hops", {true, Range::kNonNegative}},
    {"control_hop_ns", {true, Range::kNonNegative}},
    {"step_overhead_ns", {true, Range::kNonNegative}},
    {"cores", {true, Range::kNonNegative}},
    {"shared_weight_stream_bytes_per_s", {true, Range::kNonNegative}},
    {"", {true, Range::kNonNegative}},  // sentinel, never a name
}};

const std::pair<bool, Range>* FindFigure(std::string_view name) {
  if (name.empty()) return nullptr;
  for (const auto& [n, info] : kFigures) {
    if (n == name) return &info;
  }
  return nullptr;
}

std::string ValidNames() {
  std::string out;
  for (std::string_view n : CostFigureNames()) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

// A pointer to the figure's storage: double for fractions, int64 for the rest.
struct Slot {
  double* real = nullptr;
  int64_t* integer = nullptr;
};

Slot SlotOf(CostParams& p, std::string_view n) {
  ChipCostParams& c = p.chip;
  LinkCostParams& l = p.link;
  RuntimeCostParams& r = p.runtime;
  if (n == "matrix_efficiency") return {&c.matrix_efficiency, nullptr};
  if (n == "weight_stream_bytes_per_s") return {nullptr, &c.weight_stream_bytes_per_s};
  if (n == "weight_stream_fraction") return {&c.weight_stream_fraction, nullptr};
  if (n == "vector_ops_per_s") return {nullptr, &c.vector_ops_per_s};
  if (n == "memory_efficiency") return {&c.memory_efficiency, nullptr};
  if (n == "op_overhead_ns") return {nullptr, &c.op_overhead_ns};
  if (n == "matrix_fill_ns") return {nullptr, &c.matrix_fill_ns};
  if (n == "vector_fill_ns") return {nullptr, &c.vector_fill_ns};
  if (n == "layer_sync_ns") return {nullptr, &c.layer_sync_ns};
  if (n == "link_efficiency") return {&l.link_efficiency, nullptr};
  if (n == "hop_latency_ns") return {nullptr, &l.hop_latency_ns};
  if (n == "collective_step_overhead_ns") return {nullptr, &l.collective_step_overhead_ns};
  if (n == "control_hops") return {nullptr, &r.control_hops};
  if (n == "control_hop_ns") return {nullptr, &r.control_hop_ns};
  if (n == "step_overhead_ns") return {nullptr, &r.step_overhead_ns};
  if (n == "cores") return {nullptr, &r.cores};
  if (n == "shared_weight_stream_bytes_per_s")
    return {nullptr, &r.shared_weight_stream_bytes_per_s};
  throw InvalidInput("unknown cost figure '" + std::string(n) + "' (figures: " + ValidNames() +
                     ")");
}

// "what is wrong" with `value` for the figure, or empty.
std::string RangeProblem(std::string_view name, double value) {
  const auto* info = FindFigure(name);
  if (!std::isfinite(value)) return "must be a finite number";
  switch (info->second) {
    case Range::kEfficiency:
      if (!(value > 0 && value <= 1)) return "must be in (0, 1], got " + std::to_string(value);
      break;
    case Range::kNonNegative:
      if (value < 0) return "must be >= 0, got " + std::to_string(value);
      break;
    case Range::kHopLatency:
      if (value < -1) return "must be >= 0 (or -1: the link's own latency)";
      break;
  }
  if (info->first && std::fabs(value) > 9.0e18) return "is too large";
  return {};
}

// The shortest text that reads back as the same double; integers without a fraction.
std::string Number(double v, bool integer) {
  if (integer) return std::to_string(std::llround(v));
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, r.ptr);
  // YAML reads "1e+12" as a string in some readers; keep a plain decimal point for clarity.
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::optional<double> ParseNumber(const std::string& text) {
  if (text.empty()) return std::nullopt;
  double v = 0;
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, v);
  if (r.ec != std::errc() || r.ptr != end) return std::nullopt;
  return v;
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// lpu-v1's figures with their sources (cost_model.h gives the same reasoning at more length).
CostParams LpuV1Params() {
  CostParams p;
  p.name = "lpu-v1";
  p.chip = LpuV1CostParams();
  p.link = LpuV1LinkCostParams();
  const std::string isca20 = "Abts et al., Think Fast: A Tensor Streaming Processor, ISCA 2020";
  const std::string isca22 =
      "Abts et al., A Software-defined Tensor Streaming Multiprocessor for Large-scale Machine "
      "Learning, ISCA 2022";
  auto note = [&](const char* name, std::string source) { p.notes[name] = {std::move(source)}; };
  note("matrix_efficiency",
       "generic default (well-tiled large products reach ~80% of peak); bounds prefill only, not "
       "the batch-1 decode this file is fitted to");
  p.notes["weight_stream_bytes_per_s"] = {
      "fitted: Groq's Llama-2-70B, INT8, 4k context, 576 chips, ~300 tokens/s per user (the only "
      "observation; lockstep calibrate, partition/params/lpu-v1.observations.json); the rate "
      "weights and cached K/V enter the matrix units at batch 1, not published. Upper bound: "
      "the 80 TB/s SRAM figure",
      true, 1.0e11, 8.0e13};
  note("weight_stream_fraction", "unused: weight_stream_bytes_per_s is given");
  note("vector_ops_per_s", "16 ALUs x 320 lanes x 900 MHz (" + isca20 + ")");
  note("memory_efficiency", "generic default; activations and KV traffic");
  note("op_overhead_ns", "derived: an instruction issues in one cycle; its latency is the fills");
  note("matrix_fill_ns",
       "derived: an operand crosses <= 46 slices (44 MEM + SXM + edge) to the MXM and the result "
       "46 back at one slice per cycle, + 20 cycles of superlane stagger (20 superlanes, one "
       "cycle apart), + ~20 cycles for the MXM's sum of 320 products (estimated: a pipelined "
       "tree of ~9 adder levels) = 132 cycles at 900 MHz = 147 ns (" +
           isca20 + ")");
  note("vector_fill_ns",
       "derived: <= 44 MEM slices in and out of the central VXM + 20 cycles stagger + a chain "
       "of up to 16 ALUs = 124 cycles at 900 MHz = 138 ns (" +
           isca20 + ")");
  note("layer_sync_ns",
       "derived: a software-scheduled network has no per-layer barrier; chips are aligned once "
       "per program and kept aligned by runtime deskew (" +
           isca22 + "); each exchange's alignment is the collective step overhead");
  note("link_efficiency",
       "derived: 64b/66b (0.970) x RS(528,514) FEC (0.973) x ~5% packet framing = 0.90");
  note("hop_latency_ns",
       "-1 = the link's own latency, 600 ns for lpu-v1: Groq's < 3 us end to end over <= 5 hops "
       "for 10,440 chips (" +
           isca22 +
           "), divided by 5, an upper bound. Made of: RS(528,514) FEC holds a 5,280-bit codeword "
           "(51 ns at 4 x 25.78 Gb/s, ~100 ns with its decode), SerDes + PCS both ends ~100 ns, "
           "~2 m of cable ~10 ns, the rest (~390 ns) the forwarding chip's path from receiving "
           "to sending link and the scheduled hand-off");
  note("collective_step_overhead_ns",
       "derived: one VXM pass adding the received chunk (the vector fill)");
  note("control_hops", "none: the schedule is the runtime");
  note("control_hop_ns", "none: the schedule is the runtime");
  note("step_overhead_ns", "none: the schedule is the runtime");
  note("cores", "none: every chip is its own processor");
  note("shared_weight_stream_bytes_per_s", "none: every chip streams from its own SRAM");
  return p;
}

}  // namespace

const std::vector<std::string_view>& CostFigureNames() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> out;
    for (const auto& [n, info] : kFigures) {
      if (!n.empty()) out.push_back(n);
    }
    return out;
  }();
  return names;
}

bool IsCostFigure(std::string_view name) { return FindFigure(name) != nullptr; }

bool IsIntegerCostFigure(std::string_view name) {
  const auto* info = FindFigure(name);
  return info != nullptr && info->first;
}

double GetCostFigure(const CostParams& p, std::string_view name) {
  const Slot s = SlotOf(const_cast<CostParams&>(p), name);
  return s.real ? *s.real : static_cast<double>(*s.integer);
}

void SetCostFigure(CostParams& p, std::string_view name, double value) {
  const Slot s = SlotOf(p, name);
  if (std::string problem = RangeProblem(name, value); !problem.empty()) {
    throw InvalidInput(std::string(name) + " " + problem);
  }
  if (s.real) {
    *s.real = value;
  } else {
    *s.integer = std::llround(value);
  }
}

CostParams CostParamsForChip(const topology::ChipSpec& chip) {
  CostParams p;
  if (chip.name == "lpu-v1") {
    p = LpuV1Params();
  } else {
    p.name = chip.name;
    p.chip = ChipCostParams{};
    p.link = LinkCostParams{};
  }
  for (const auto& [name, text] : chip.cost_params) {
    const std::string where = "chip spec '" + chip.name + "': cost_params." + name + ": ";
    if (!IsCostFigure(name)) {
      throw InvalidInput(where + "unknown figure (figures: " + ValidNames() + ")");
    }
    const std::optional<double> v = ParseNumber(text);
    if (!v) throw InvalidInput(where + "expected a number, got '" + text + "'");
    if (std::string problem = RangeProblem(name, *v); !problem.empty()) {
      throw InvalidInput(where + problem);
    }
    SetCostFigure(p, name, *v);
    p.notes[name] = {"from the topology's chip spec"};
  }
  return p;
}

ChipCostParams CostParamsFor(const topology::ChipSpec& chip) {
  return CostParamsForChip(chip).chip;
}

LinkCostParams LinkCostParamsFor(const topology::ChipSpec& chip) {
  return CostParamsForChip(chip).link;
}

CostParams ParseCostParams(std::string_view yaml, const std::string& source,
                           const CostParams& base) {
  auto fail = [&](const YAML::Node* n, const std::string& field, const std::string& what) {
    std::string where = source;
    if (n != nullptr && n->Mark().line >= 0) where += ":" + std::to_string(n->Mark().line + 1);
    throw InvalidInput(where + ": " + (field.empty() ? "" : field + ": ") + what);
  };
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    throw InvalidInput(source + ":" + std::to_string(e.mark.line + 1) +
                       ": YAML syntax error: " + e.msg);
  }
  if (!root.IsMap()) fail(&root, "", "expected a mapping with format, name, figures");
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (key != "format" && key != "name" && key != "figures") {
      fail(&kv.first, key, "unknown field (valid fields: format, name, figures)");
    }
  }
  const YAML::Node format = root["format"];
  if (!format || !format.IsScalar() || format.Scalar() != kFormat) {
    fail(format ? &format : &root, "format", "must be " + std::string(kFormat));
  }
  CostParams p = base;
  if (const YAML::Node name = root["name"]) {
    if (!name.IsScalar()) fail(&name, "name", "expected a name");
    p.name = name.Scalar();
  }
  const YAML::Node figures = root["figures"];
  if (!figures) fail(&root, "figures", "missing (a mapping of figure: value)");
  if (!figures.IsMap()) fail(&figures, "figures", "expected a mapping of figure: value");
  std::vector<std::string> seen;
  for (const auto& kv : figures) {
    const std::string name = kv.first.Scalar();
    const std::string field = "figures." + name;
    if (!IsCostFigure(name)) {
      fail(&kv.first, field, "unknown figure (figures: " + ValidNames() + ")");
    }
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      fail(&kv.first, field, "given twice");
    }
    seen.push_back(name);
    YAML::Node value = kv.second;
    CostFigureNote note;
    if (value.IsMap()) {
      for (const auto& f : value) {
        const std::string k = f.first.Scalar();
        if (k != "value" && k != "source" && k != "fitted" && k != "lower" && k != "upper") {
          fail(&f.first, field + "." + k,
               "unknown field (valid fields: value, source, fitted, lower, upper)");
        }
      }
      const YAML::Node source_node = value["source"];
      if (source_node) {
        if (!source_node.IsScalar()) fail(&source_node, field + ".source", "expected text");
        note.source = source_node.Scalar();
      }
      if (const YAML::Node fitted = value["fitted"]) {
        if (!fitted.IsScalar() || (fitted.Scalar() != "true" && fitted.Scalar() != "false")) {
          fail(&fitted, field + ".fitted", "expected true or false");
        }
        note.fitted = fitted.Scalar() == "true";
      }
      for (const char* bound : {"lower", "upper"}) {
        if (const YAML::Node b = value[bound]) {
          const std::optional<double> v = b.IsScalar() ? ParseNumber(b.Scalar()) : std::nullopt;
          if (!v) fail(&b, field + "." + bound, "expected a number");
          (std::string(bound) == "lower" ? note.lower : note.upper) = *v;
        }
      }
      value = value["value"];
      if (!value) fail(&kv.second, field + ".value", "missing");
    }
    const std::optional<double> v = value.IsScalar() ? ParseNumber(value.Scalar()) : std::nullopt;
    if (!v) fail(&value, field, "expected a number");
    if (std::string problem = RangeProblem(name, *v); !problem.empty()) {
      fail(&value, field, problem);
    }
    if (IsIntegerCostFigure(name) && *v != std::floor(*v)) {
      fail(&value, field, "must be a whole number");
    }
    SetCostFigure(p, name, *v);
    if (note.source.empty() && !note.fitted) {
      p.notes.erase(name);
    } else {
      p.notes[name] = note;
    }
  }
  return p;
}

std::string CostParamsToYaml(const CostParams& p) {
  std::string out =
      "# Lockstep cost parameters: the cost model's figures for one chip type and where each "
      "comes from\n# (lockstep calibrate writes them; plan, schedule, simulate and run read them "
      "with --cost-params).\n";
  out += "format: " + std::string(kFormat) + "\n";
  out += "name: " + Quote(p.name) + "\n";
  out += "figures:\n";
  for (std::string_view name : CostFigureNames()) {
    const std::string value = Number(GetCostFigure(p, name), IsIntegerCostFigure(name));
    out += "  " + std::string(name) + ":";
    auto it = p.notes.find(std::string(name));
    if (it == p.notes.end()) {
      out += " " + value + "\n";
      continue;
    }
    const CostFigureNote& n = it->second;
    out += "\n    value: " + value + "\n";
    if (n.fitted) out += "    fitted: true\n";
    if (n.lower != 0 || n.upper != 0) {
      out += "    lower: " + Number(n.lower, false) + "\n";
      out += "    upper: " + Number(n.upper, false) + "\n";
    }
    if (!n.source.empty()) out += "    source: " + Quote(n.source) + "\n";
  }
  return out;
}

CostParams LoadCostParams(const std::string& path, const topology::ChipSpec& chip) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot read cost parameters file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return ParseCostParams(text.str(), path, CostParamsForChip(chip));
}

void SaveCostParams(const std::string& path, const CostParams& p) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorCode::kNotFound, "cannot write cost parameters file " + path);
  out << CostParamsToYaml(p);
  if (!out.flush()) throw Error(ErrorCode::kNotFound, "cannot write " + path);
}

}  // namespace lockstep::partition
