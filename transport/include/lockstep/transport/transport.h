// A `Transport` opens the endpoints of a chip's direct links on one backend. Callers (workers,
// the coordinator, tests) only see `Transport` and `Endpoint`; the backend is chosen by name:
//
//   sim     in-process links in virtual time: each link direction moves one transfer at a time;
//           a message issued at send_time_ns starts when the direction is free, takes
//           ceil(bytes * 1e9 / bytes_per_second) ns and arrives latency_ns later. Deterministic.
//   inproc  ZeroMQ inproc sockets: chips are threads of one process sharing this Transport.
//   ipc     ZeroMQ ipc sockets: chips are processes on one host; socket files in `ipc_dir`.
//   tcp     ZeroMQ tcp sockets between hosts, optionally CURVE-encrypted and authenticated.
//
// Integrity by link kind (TransportOptions::checksums, default auto): payloads carry a CRC32C
// where a medium could damage them and nothing else already checks every message, i.e. on tcp
// without CURVE; on the same host (sim, inproc, ipc) and under CURVE they travel unchecked. The
// frame header says which (endpoint.h).
//
// Queues are bounded per link direction: in bytes when the LinkSpec carries the schedule's bound
// for that direction (message.h QueueBound, QueueDepthFor below), else in messages
// (queue_capacity).
//
// The socket graph equals the link graph: one ZeroMQ PAIR socket per link end, opened only
// between the two directly linked chips. The lower (chip, port) end binds, the other connects.
// `OpenChip` returns when every peer has answered a hello frame naming the expected ends, or
// throws naming the first peer that did not ("link chip 3:7 <-> chip 12:7: peer chip 12 did not
// connect within 5000 ms").
//
// A ZeroMQ ipc/tcp peer whose connection drops (its process was killed, its host went away) is
// reported by Receive and Send as kDisconnected "link chip 3:7 <-> chip 12:7: ... peer chip 12
// disconnected" within ~50 ms, after every message that arrived before; inproc peers are threads
// of this process and close their ends instead.
//
// Thread-safety: OpenChip may be called concurrently from several threads (one per chip, which
// is how the sim and inproc backends are used). A Transport must outlive its endpoints. The last
// of a ZeroMQ transport and its endpoints to go waits for endpoints closed with a timeout whose
// peer has not yet read up to the end-of-stream marker, at most until that timeout.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/transport/endpoint.h"

namespace lockstep::transport {

// CURVE keys for the tcp backend (Z85 text, 40 characters each); see `lockstep keys generate`.
struct CurveOptions {
  bool enabled = false;
  std::string public_key;  // this process's key pair
  std::string secret_key;
  // The public keys of the chips it may link to: the connecting end uses the binding peer's key
  // as server key; the binding end accepts only clients whose key is in this map.
  std::map<uint32_t, std::string> peer_public_keys;
};

// Whether payloads carry a CRC32C (computed by the sender, verified by the receiver), by link
// kind: DESIGN.md, "integrity where corruption can happen".
enum class LinkChecksums : uint8_t {
  // The rule. sim and inproc hand a pointer to another thread of this process, and ipc copies
  // through the kernel's memory on one host: no medium a checksum guards against, so their
  // payloads travel unchecked (two passes over every tensor would cost more than the hand-off,
  // BENCHMARKS.md "Transport"). tcp crosses a network: checksummed, unless CURVE authenticates
  // every message (a Poly1305 tag, which a damaged byte already fails), where a CRC would check
  // the same thing twice.
  kAuto,
  kOn,   // every link kind checksums its payloads and refuses unchecked frames
  kOff,  // no link kind checksums (a checked frame that arrives is still verified)
};

// "auto", "on", "off".
std::string_view LinkChecksumsName(LinkChecksums policy);
// The inverse; InvalidInput "link checksums 'x' (valid: auto, on, off)" otherwise.
LinkChecksums ParseLinkChecksums(std::string_view name);

struct TransportOptions {
  std::string backend = "sim";  // sim, inproc, ipc, tcp
  // Per link direction whose LinkSpec bound is unknown (message.h QueueBound): Send never blocks
  // while fewer than queue_capacity messages are unreceived (>= 1). sim blocks exactly there; the
  // ZeroMQ backends may hold up to about twice as many, plus what the OS socket buffers take for
  // ipc/tcp. ipc/tcp send a tensor of 2 MiB or more over such a direction as up to 8 segments
  // (proto/frame.capnp), so their sending side holds 8 times as many ZeroMQ messages: small
  // messages may queue up to ~8x as deep there before Send blocks, large ones as before. A
  // direction with a known bound is sized from it instead (QueueDepthFor).
  int queue_capacity = 16;
  // Largest accepted payload; larger frames are refused by sender and receiver (256 MiB).
  uint64_t max_payload_bytes = uint64_t{256} << 20;
  // Which links checksum their payloads (above). Both ends of a link should agree: an endpoint
  // that checksums refuses unchecked frames, naming the link.
  LinkChecksums checksums = LinkChecksums::kAuto;
  // ipc: directory holding the socket files (path length <= 100 characters in total).
  std::string ipc_dir = "/tmp";
  // tcp: IP address of each chip (the binding end listens on it, the other end connects to it);
  // chips not listed are on 127.0.0.1.
  std::map<uint32_t, std::string> tcp_hosts;
  // tcp: the port the binding end of a link (its lower (chip, port) end) listens on, and the
  // other end connects to. The rule is tcp_base_port + chip * tcp_ports_per_chip + port, which
  // needs port < tcp_ports_per_chip and a result <= 65535: with the defaults (27000, 16) chips
  // 0..2407 fit. Larger systems (up to 10,440 chips) list the port of each binding end in
  // `tcp_ports`, which takes precedence over the rule; only the ends of the links a process
  // opens need to be there, so a per-host map of a few dozen entries is enough. OpenChip checks
  // every link's port before it opens a socket and names the chip end, the port that would
  // overflow and these options.
  int tcp_base_port = 27000;
  int tcp_ports_per_chip = 16;
  std::map<PortRef, int> tcp_ports;
  CurveOptions curve;
  // Receives warnings (e.g. a refused peer); empty: dropped. Called from a backend thread.
  std::function<void(std::string_view)> log;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Opens `chip`'s end of each of `links` (each link must have `chip` at exactly one end) and
  // waits up to `connect_timeout` for all peers. Endpoints are returned in the order of `links`.
  virtual std::vector<std::unique_ptr<Endpoint>> OpenChip(uint32_t chip,
                                                          const std::vector<LinkSpec>& links,
                                                          Millis connect_timeout) = 0;

  // One link end; shorthand for OpenChip with one link.
  std::unique_ptr<Endpoint> Open(const LinkSpec& link, PortRef local, Millis connect_timeout);

  const TransportOptions& options() const { return options_; }

 protected:
  explicit Transport(TransportOptions options) : options_(std::move(options)) {}

 private:
  TransportOptions options_;
};

// Whether the endpoints of a transport made with `options` checksum their payloads (and so
// refuse unchecked frames): `checksums` resolved for the backend's link kind and CURVE.
bool ChecksumsPayloads(const TransportOptions& options);

// How deep one link direction's queues are, in messages.
struct QueueDepth {
  int send = 0;     // the sending end holds this many before Send blocks (ZeroMQ: send mark)
  int receive = 0;  // the receiving end queues this many before it stops taking more
};

// Receive queues hold at least this many bytes of small tensors, so a link streaming them keeps
// moving without a hand-over per message; large tensors are held two at a time.
inline constexpr int64_t kQueueFloorBytes = int64_t{1} << 20;

// The queue depths of the direction bounded by `bound` on the ZeroMQ backends. Known bound (L =
// max_message_bytes, C = max(messages, 1)): send = max(2C + 2, kQueueFloorBytes / L) (ZeroMQ
// tells a writer about reads in batches of about half its mark, so a queue may look full with
// half of it unread: 2C + 2 keeps Send from blocking below C), receive = max(2,
// kQueueFloorBytes / L), both at most 4096. The receiving end thus holds at most
// max(2L, kQueueFloorBytes + L) bytes of tensors, plus the OS socket buffers on ipc/tcp. Unknown
// bound: send = receive = 2 * queue_capacity + 2 messages (ipc/tcp: send x 8 for segments).
// The benchmark gives raw ZeroMQ the same marks.
QueueDepth QueueDepthFor(const QueueBound& bound, const TransportOptions& options);

// Creates a transport; InvalidInput for an unknown backend or bad options.
std::unique_ptr<Transport> CreateTransport(const TransportOptions& options);

// The backend names CreateTransport accepts.
std::vector<std::string> TransportBackends();

}  // namespace lockstep::transport
