// Host discovery and chip-to-core mapping — where the simulated chips of a Topology run on the
// machine that hosts them.
//
// `HostSummary` is a plain value describing a host's processors as hwloc sees them: packages,
// NUMA domains with their memory and cores, cores with the OS indices of their hardware threads
// (PUs), and the data/unified cache levels. It is built either from this machine
// (`DiscoverHost`, the only nondeterministic entry point) or from an hwloc synthetic
// description (`DiscoverSyntheticHost`, the deterministic fake for tests and what-if questions:
// "pack:2 numa:2 l3:1 core:4 pu:2"). Everything in it is ordered by hwloc logical index, so two
// summaries of the same host compare equal and everything derived from them is deterministic.
// hwloc itself stays private to the topology library.
//
// `MapChipsToCores` is a pure function: it decides, once, which host core each chip's worker
// thread is pinned to when a topology is run in-process or as processes on one host.
//
// All functions are thread-safe (each call builds and frees its own hwloc topology).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/topology/topology.h"

namespace lockstep::topology {

// One level of data or unified cache (instruction caches are left out). A level whose caches
// differ in size (hybrid CPUs) has one entry per size.
struct HostCache {
  std::string name;        // "L1d", "L2", "L3", ...: 'd' marks a data-only cache
  int level = 0;           // 1, 2, 3, ...
  int64_t size_bytes = 0;  // size of one cache of this level (0 if hwloc does not know)
  int count = 0;           // how many such caches the host has
  friend bool operator==(const HostCache&, const HostCache&) = default;
};

struct HostCore {
  int index = 0;         // hwloc logical index of the core, dense from 0 over the host
  std::vector<int> pus;  // OS indices of its hardware threads, ascending (what pinning uses)
  friend bool operator==(const HostCore&, const HostCore&) = default;
};

struct NumaDomain {
  int index = 0;             // hwloc logical index of the NUMA node
  int64_t memory_bytes = 0;  // local memory; 0 when unknown
  // The cores local to this domain, by logical index. A core belongs to exactly one domain
  // (the first, by index, whose CPUs include it); memory-only domains have no cores.
  std::vector<HostCore> cores;
  friend bool operator==(const NumaDomain&, const NumaDomain&) = default;
};

struct HostSummary {
  // "this machine", or "synthetic: <description>".
  std::string source;
  int packages = 0;  // 0 when hwloc reports none (a synthetic description without "pack")
  int numa_nodes = 0;
  int cores = 0;  // where hwloc reports no core level, each PU counts as one core
  int pus = 0;
  std::vector<HostCache> caches;  // by level, then size
  // At least one domain: a host without NUMA information is one domain holding every core.
  std::vector<NumaDomain> numa;
  friend bool operator==(const HostSummary&, const HostSummary&) = default;
};

// This machine, restricted to the CPUs this process may use and is bound to (cgroup cpusets,
// taskset / numactl binding at the time of the call: call it before pinning any thread).
// Throws Error (kUnavailable) if hwloc cannot read the topology.
HostSummary DiscoverHost();

// The host an hwloc synthetic description describes, e.g. "numa:2 core:8 pu:2". Throws Error
// (kInvalidInput) naming the description and showing a valid example when hwloc rejects it or
// it describes more than 65536 PUs.
HostSummary DiscoverSyntheticHost(const std::string& description);

// Pins the calling thread to the PUs `pus` (OS indices; ones outside the CPU set's range are
// left out). False when none is left or the OS refuses.
bool PinCallingThread(const std::vector<int>& pus);

// Where one chip's worker runs.
struct ChipPlacement {
  ChipId chip = 0;
  int numa = 0;          // NumaDomain::index
  int core = 0;          // HostCore::index
  std::vector<int> pus;  // the core's PU OS indices: the CPU set to pin the worker to
  friend bool operator==(const ChipPlacement&, const ChipPlacement&) = default;
};

// Pins every chip of `topo` (spares only when `include_spares`; chips marked down are placed
// too, so a failover does not move the others) to one host core. The rule:
//   1. The chips of one topology node stay on one NUMA domain: the nodes talk most inside
//      themselves, and that traffic should not cross the memory interconnect.
//   2. Only domains with cores take chips. The nodes, in node order, are cut into contiguous
//      blocks, one per domain in domain order, as even as possible: with N nodes and D domains
//      the first N % D domains take ceil(N / D) nodes and the rest floor(N / D), so
//      neighbouring nodes share a domain.
//   3. Within a domain its C chips (node order, then id order) go to its K cores in order:
//      chip i goes to core floor(i * K / C). Fewer chips than cores spreads them out (K/C cores
//      apart); more chips than cores puts floor(C/K) or ceil(C/K) consecutive chips on each
//      core, so the loads of a domain's cores differ by at most one.
// Returns one placement per chip, in chip id order. Deterministic: depends only on the chips'
// node indices and the summary. Throws Error (kInvalidInput) when there are no chips to place
// or the host has no cores.
std::vector<ChipPlacement> MapChipsToCores(const Topology& topo, const HostSummary& host,
                                           bool include_spares = true);

}  // namespace lockstep::topology
