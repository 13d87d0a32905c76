// libFuzzer target for the topology file reader. Any input either fails with lockstep::Error or
// parses; what parses must write, re-parse and re-write to the same bytes. Nothing may crash.
// Run: scripts/fuzz.sh [seconds] (builds it with clang; by hand:)
//   CXX=clang++-14 CC=clang-14 cmake -S . -B build-fuzz -G Ninja -DLOCKSTEP_FUZZ=ON \
//       -DLOCKSTEP_BUILD_BENCH=OFF
//   cmake --build build-fuzz --target topology_yaml_fuzz
//   build-fuzz/topology/topology_yaml_fuzz -max_total_time=60 -max_len=4096 <corpus dir>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lockstep/common/error.h"
#include "lockstep/topology/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep::topology;  // NOLINT: a fuzz entry point, nothing else in scope
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Topology topo;
  try {
    topo = ParseTopologyYaml(text, "fuzz.yaml");
  } catch (const lockstep::Error&) {
    return 0;  // rejected with a message: fine
  }
  // Outside the try: a written file that does not read back is a bug, and must crash.
  const std::string written = WriteTopologyYaml(topo);
  if (WriteTopologyYaml(ParseTopologyYaml(written, "written.yaml")) != written) __builtin_trap();
  return 0;
}
