// What the coordinator tells a worker about the world outside its program: the link-layer
// settings every worker builds its transport from, its links as the transport sees them, and
// the digest of a host a worker registers with. Plain values and pure functions.
//
// LinkSpecs lives here, not in schedule/ (which does not know the transport) nor in the
// coordinator's deployment builder (which workers must not depend on): it is the one place that
// knows both a topology link and the transport's LinkSpec, and both sides of an assignment need it
// (the deployment to fill ChipDeployment::links, tests of a worker to open a chip's links).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/topology/host.h"
#include "lockstep/topology/topology.h"
#include "lockstep/transport/message.h"
#include "lockstep/transport/transport.h"

namespace lockstep::control {

// The link-layer settings every worker process builds its transport::Transport from.
struct TransportSettings {
  std::string backend = "ipc";  // ipc or tcp for worker processes; sim/inproc for threads
  int queue_capacity = 16;      // raised by the deployment to what one step moves on a link
  uint64_t max_payload_bytes = uint64_t{256} << 20;
  std::string ipc_dir = "/tmp";  // ipc: where the link socket files go
  int tcp_base_port = 27000;     // tcp: the binding end listens on base + chip * 16 + port
  std::vector<std::pair<uint32_t, std::string>> tcp_hosts;  // tcp: chip -> IP; others 127.0.0.1
  int64_t connect_timeout_ms = 10000;  // OpenChip: every peer must answer within this
  int64_t step_timeout_ms = 10000;     // one Send or Recv inside a step
  // tcp: CURVE-encrypt and authenticate every link. The run has one key pair (`lockstep keys
  // generate`); only its public key travels (the control channel is not encrypted): each worker
  // reads the key pair from its own files (worker::WorkerOptions::curve_keys), and a link end
  // accepts only a peer that holds the same pair, so a worker with another key is refused.
  bool curve = false;
  std::string curve_public_key;  // Z85, 40 characters
  // Which links checksum their payloads (`--link-checksums`; transport/transport.h): auto by
  // link kind, or on/off for every link. Every worker of a run gets the same, so both ends of a
  // link agree (an end that checksums refuses unchecked frames).
  transport::LinkChecksums checksums = transport::LinkChecksums::kAuto;
};

// The transport options these settings give, CURVE aside (a worker adds its own key pair).
transport::TransportOptions TransportOptionsFor(const TransportSettings& settings);

// The transport's view of topology links (ends, latency, bandwidth), in the order given.
std::vector<transport::LinkSpec> LinkSpecs(const topology::Topology& topo,
                                           const std::vector<topology::LinkId>& links);

// A host as a worker reports it when it registers (a digest of topology::HostSummary).
struct HostInfo {
  std::string source;
  int packages = 0, numa_nodes = 0, cores = 0, pus = 0;
  std::vector<int> core_pus;  // per core (hwloc logical order): the OS index of its first PU
  friend bool operator==(const HostInfo&, const HostInfo&) = default;
};
HostInfo SummarizeHost(const topology::HostSummary& host);

}  // namespace lockstep::control
