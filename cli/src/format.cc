#include "format.h"

#include <cstdio>

namespace lockstep::cli {
namespace {

std::string Scaled(double v, const char* const* units, int count, double step, int decimals) {
  int u = 0;
  while (u + 1 < count && v >= step) {
    v /= step;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f %s", decimals, v, units[u]);
  return buf;
}

}  // namespace

std::string FormatBytes(int64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  return Scaled(static_cast<double>(bytes), kUnits, 6, 1024.0, 1);
}

std::string FormatRate(int64_t bytes_per_s) {
  static const char* const kUnits[] = {"B/s", "KB/s", "MB/s", "GB/s", "TB/s", "PB/s"};
  return Scaled(static_cast<double>(bytes_per_s), kUnits, 6, 1000.0, 1);
}

std::string FormatNs(int64_t ns) {
  static const char* const kUnits[] = {"ns", "us", "ms", "s"};
  return Scaled(static_cast<double>(ns), kUnits, 4, 1000.0, ns < 1000 ? 0 : 2);
}

std::string Label(const std::string& label, int width) {
  std::string s = label + ":";
  if (static_cast<int>(s.size()) < width) s.append(width - s.size(), ' ');
  return s;
}

}  // namespace lockstep::cli
