#include "lockstep/topology/chip_spec.h"

namespace lockstep::topology {

ChipSpec LpuV1() {
  ChipSpec s;
  s.name = "lpu-v1";
  s.sram_bytes = 220LL * 1024 * 1024;
  s.peak_ops_per_s[static_cast<int>(Dtype::kInt8)] = 750'000'000'000'000LL;
  s.peak_ops_per_s[static_cast<int>(Dtype::kFp16)] = 188'000'000'000'000LL;
  s.memory_bandwidth_bytes_per_s = 80'000'000'000'000LL;
  s.clock_hz = 900'000'000LL;
  s.ports = 16;
  s.link_bandwidth_bytes_per_s = 14'000'000'000LL;
  s.link_latency_ns = 600;
  return s;
}

std::vector<std::string> ChipPresetNames() { return {"lpu-v1"}; }

std::optional<ChipSpec> ChipPreset(std::string_view name) {
  if (name == "lpu-v1") return LpuV1();
  return std::nullopt;
}

std::string CheckChipSpec(const ChipSpec& spec) {
  auto positive = [](const char* field, int64_t v) -> std::string {
    if (v > 0) return {};
    return std::string(field) + " must be > 0, got " + std::to_string(v);
  };
  if (spec.name.empty()) return "name must not be empty";
  for (const std::string& m :
       {positive("sram_bytes", spec.sram_bytes),
        positive("memory_bandwidth_bytes_per_s", spec.memory_bandwidth_bytes_per_s),
        positive("clock_hz", spec.clock_hz), positive("ports", spec.ports),
        positive("link_bandwidth_bytes_per_s", spec.link_bandwidth_bytes_per_s)}) {
    if (!m.empty()) return m;
  }
  if (spec.link_latency_ns < 0) {
    return "link_latency_ns must be >= 0, got " + std::to_string(spec.link_latency_ns);
  }
  bool any_compute = false;
  for (Dtype d : kAllDtypes) {
    if (spec.peak_ops(d) < 0) {
      return "peak_ops_per_s." + std::string(DtypeName(d)) + " must be >= 0";
    }
    any_compute = any_compute || spec.peak_ops(d) > 0;
  }
  if (!any_compute) return "peak_ops_per_s must be > 0 for at least one dtype";
  return {};
}

}  // namespace lockstep::topology
