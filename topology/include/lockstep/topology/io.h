// Topology files — a human-editable YAML text form of a Topology (full spec: topology/FORMAT.md).
//
// Writing is deterministic: the same Topology always gives the same bytes, and reading what was
// written gives back an equal Topology (name, chip specs in order, chips, links in id order, down
// and spare flags), which writes the same bytes again. Files are compact — one flow-style line per
// chip and per link, fields equal to their default omitted — so a 145-rack system (10,440 chips,
// ~57,000 links) is a ~2 MB file. Every number is an exact integer in base units; `1.4e10` is
// accepted on input only because it is a whole number.
//
// Reading validates everything and throws lockstep::Error (kInvalidInput) on the first problem,
// with one line naming the source, the 1-based line and the field, e.g.
//   rack.yaml:17: links[3].b: link 0:0 <-> 5:17: chip 5 port 17 is out of range (...)
// Structural link checks (ports, reuse, bandwidth, latency) are Topology::AddLink's own.
//
//   # lockstep topology
//   format: lockstep-topology/1
//   name: rack
//   chip_specs:                  # index order = Topology::specs() order
//     - {name: lpu-v1, preset: lpu-v1}
//     - {name: half, preset: lpu-v1, ports: 8, peak_ops_per_s: {int8: 375000000000000}}
//   defaults: {spec: lpu-v1}     # the spec of chips that name none (default: the first spec)
//   chips:                       # ids exactly 0..N-1, any order
//     - {id: 0, node: 0, rack: 0}
//     - {id: 1, node: 0, rack: 0, spec: half, spare: true, down: true}
//   links:                       # link id = position; bandwidth/latency default to chip a's spec
//     - {a: "0:0", b: "1:0"}
//     - {a: "0:1", b: "1:1", bandwidth_bytes_per_s: 7000000000, latency_ns: 900, down: true}
//
// Pure functions apart from SaveTopology/LoadTopology, which touch only the named file (and a
// temporary file beside it). Thread-safe: no shared state.
#pragma once

#include <string>
#include <string_view>

#include "lockstep/topology/topology.h"

namespace lockstep::topology {

// The format tag every file starts with; a file with another tag is rejected.
inline constexpr std::string_view kTopologyFormat = "lockstep-topology/1";

// The file text for `topo`. Deterministic: equal topologies give identical bytes.
std::string WriteTopologyYaml(const Topology& topo);

// Parses and validates file text. `source_name` (usually the path) prefixes every error message.
// Throws Error(kInvalidInput) naming source:line: field on the first problem found.
Topology ParseTopologyYaml(std::string_view text, const std::string& source_name);

// Writes WriteTopologyYaml(topo) to `path` through a temporary file in the same directory that
// is renamed over `path` at the end, so a failed save never leaves a partial file behind.
// Throws Error: kNotFound when the directory does not exist, kInvalidInput when it cannot be
// written (permissions, disk full), naming the path and the reason.
void SaveTopology(const Topology& topo, const std::string& path);

// Reads and parses `path`. Throws Error: kNotFound when the file does not exist, kInvalidInput
// when it cannot be read (a directory, permissions) or does not parse (see ParseTopologyYaml).
Topology LoadTopology(const std::string& path);

}  // namespace lockstep::topology
