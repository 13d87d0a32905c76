// Human-readable figures for CLI text output (JSON output always carries the raw integers).
#pragma once

#include <cstdint>
#include <string>

namespace lockstep::cli {

// 230686720 -> "220.0 MiB"; binary units.
std::string FormatBytes(int64_t bytes);
// 14000000000 -> "14.0 GB/s"; decimal units, as link rates are quoted.
std::string FormatRate(int64_t bytes_per_s);
// 1500 -> "1.50 us"; ns in, the largest unit that keeps the number >= 1.
std::string FormatNs(int64_t ns);
// Left-aligned "label:" padded to `width`, for key/value listings.
std::string Label(const std::string& label, int width = 22);

}  // namespace lockstep::cli
