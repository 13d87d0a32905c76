// Cost-parameter files (`lockstep-cost-params/1`, issue #21): the effective figures of one chip
// type — its ChipCostParams, its LinkCostParams and, for a host measured by `lockstep calibrate
// --host`, the runtime's own terms — each with where it comes from (a cited figure, a
// derivation, a measurement, or fitted, with the bounds of the fit). `lockstep calibrate`
// writes them; `plan`, `schedule`, `simulate` and `run` read them (--cost-params FILE), and a
// plan embeds the figures it was made with (proto/plan.capnp).
//
// Every figure has a name: its field name in ChipCostParams, LinkCostParams or
// RuntimeCostParams (CostFigureNames()). A file need not give every figure: the rest are the
// built-in figures of the chip it is applied to (CostParamsForChip). A chip spec in a topology
// file may carry figures too (topology::ChipSpec::cost_params); they override the built-in ones.
//
// Pure functions and value types; thread-safe. Writing is deterministic (same params, same
// bytes) and reading a written file gives back the same params.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/partition/cost_model.h"
#include "lockstep/topology/chip_spec.h"

namespace lockstep::partition {

// Where a figure comes from.
struct CostFigureNote {
  std::string source;  // free text: a citation, a derivation, a measurement
  bool fitted = false;
  // The fit's bounds (fitted figures; both 0 = none recorded).
  double lower = 0;
  double upper = 0;

  friend bool operator==(const CostFigureNote&, const CostFigureNote&) = default;
};

struct CostParams {
  std::string name;  // what the figures describe ("lpu-v1", "host 2 x AMD EPYC ...")
  ChipCostParams chip;
  LinkCostParams link;
  RuntimeCostParams runtime;
  std::map<std::string, CostFigureNote> notes;  // by figure name; figures without one have none

  friend bool operator==(const CostParams&, const CostParams&) = default;
};

// Every figure's name, in file order (chip, link, runtime).
const std::vector<std::string_view>& CostFigureNames();
// Whether `name` is a figure, and whether it holds a whole number.
bool IsCostFigure(std::string_view name);
bool IsIntegerCostFigure(std::string_view name);
// The figure's value (integers as doubles). Throws Error (kInvalidInput) for an unknown name.
double GetCostFigure(const CostParams& p, std::string_view name);
// Sets a figure (integer figures rounded to the nearest whole number). Throws Error
// (kInvalidInput) naming the figure and what is valid for an unknown name or a value out of
// its range (efficiencies in (0, 1], rates and counts >= 0, hop latency >= -1).
void SetCostFigure(CostParams& p, std::string_view name, double value);

// The built-in figures of `chip`: lpu-v1's cited/derived/fitted figures with their notes, the
// generic defaults otherwise; then the chip spec's own cost_params on top. Throws Error
// (kInvalidInput) "chip spec 'NAME': cost_params.FIELD: ..." for a bad figure there.
CostParams CostParamsForChip(const topology::ChipSpec& chip);

// The file form. ParseCostParams throws Error (kInvalidInput) "<source>:<line>: <field>: <what
// is wrong>" for a malformed file, an unknown or repeated figure, a value out of range. Figures
// the file does not give are taken from `base`.
CostParams ParseCostParams(std::string_view yaml, const std::string& source,
                           const CostParams& base);
std::string CostParamsToYaml(const CostParams& p);
// Files. LoadCostParams throws Error (kNotFound) when the file cannot be read; its base is
// CostParamsForChip(chip).
CostParams LoadCostParams(const std::string& path, const topology::ChipSpec& chip);
void SaveCostParams(const std::string& path, const CostParams& p);

}  // namespace lockstep::partition
