// ChipSpec — what one accelerator chip can hold and do, as the planner and scheduler see it.
//
// A plain value type. Every figure is an integer in base units (bytes, bytes/s, ops/s, Hz, ns)
// so plans computed from it are exact and reproducible. `LpuV1()` returns the published figures
// of Groq's first Tensor Streaming Processor (see DESIGN.md); the effective figures the cost
// model derives from them (streaming rates, per-op overhead) live with the cost model.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/common/dtype.h"

namespace lockstep::topology {

struct ChipSpec {
  // Name used in topology files and messages ("lpu-v1").
  std::string name = "lpu-v1";
  // On-chip memory; everything a chip holds (weights, KV cache, activations) must fit here.
  int64_t sram_bytes = 0;
  // Peak operations per second for each element type, indexed by Dtype; 0 = not supported.
  std::array<int64_t, kDtypeCount> peak_ops_per_s{};
  // Bandwidth of the on-chip memory.
  int64_t memory_bandwidth_bytes_per_s = 0;
  // Core clock.
  int64_t clock_hz = 0;
  // Number of chip-to-chip ports; a topology may use each at most once.
  int ports = 0;
  // Default bandwidth of one link, per direction, and its one-hop latency.
  int64_t link_bandwidth_bytes_per_s = 0;
  int64_t link_latency_ns = 0;
  // The cost model's figures for this chip, by name, as written (e.g. "matrix_fill_ns" ->
  // "150"): what `lockstep calibrate --host` measured for a host's cores. Topology stores them
  // uninterpreted; partition/cost_params.h reads and checks them. Empty = the cost model's
  // figures for the chip's name.
  std::map<std::string, std::string> cost_params;

  int64_t peak_ops(Dtype dtype) const { return peak_ops_per_s[static_cast<int>(dtype)]; }

  friend bool operator==(const ChipSpec&, const ChipSpec&) = default;
};

// Groq's first TSP ("LPU v1"):
//   220 MiB SRAM; 80 TB/s SRAM bandwidth (marketing figure); 750 TOPS INT8 and 188 TFLOPS FP16
//   at 900 MHz, no BF16/FP8/FP32 matrix support; 16 chip-to-chip links of 4 lanes at 28 Gb/s
//   cabled = 14 GB/s per direction. Per-hop latency is not published: 600 ns is Groq's
//   "< 3 us end to end across <= 5 hops" divided by 5, a parameter to calibrate.
ChipSpec LpuV1();

// Names of the built-in chip presets, sorted.
std::vector<std::string> ChipPresetNames();
// The preset of that name, or nullopt.
std::optional<ChipSpec> ChipPreset(std::string_view name);

// Empty when the spec is usable; otherwise a message naming the first bad field
// ("sram_bytes must be > 0, got 0").
std::string CheckChipSpec(const ChipSpec& spec);

}  // namespace lockstep::topology
