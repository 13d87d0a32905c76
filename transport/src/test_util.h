// Test helpers shared by the transport tests: per-backend options, tensors with a checkable
// byte pattern, opening both ends of a link from two threads, and error matching.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>

#include "lockstep/common/error.h"
#include "lockstep/transport/transport.h"

namespace lockstep::transport::testing {

// How long a step that should succeed may wait: generous, because CI machines are loaded; tests
// that expect a timeout pass their own short limit.
inline constexpr Millis kWait{30000};

// A backend name the tests take: "sim", "inproc", "ipc", "tcp" (link checksums auto: checked on
// tcp only), or one of them with "On" appended ("inprocOn": every payload checksummed).
inline TransportOptions PolicyFor(const std::string& name) {
  TransportOptions o;
  const bool on = name.size() > 2 && name.compare(name.size() - 2, 2, "On") == 0;
  o.backend = on ? name.substr(0, name.size() - 2) : name;
  o.checksums = on ? LinkChecksums::kOn : LinkChecksums::kAuto;
  return o;
}

// Whether endpoints of `name` (a name OptionsFor takes) checksum their payloads.
inline bool Checksums(const std::string& name) { return ChecksumsPayloads(PolicyFor(name)); }

// A fresh ipc directory / tcp port range per test process, so parallel ctest runs do not meet.
// Tests use chips 0..7 and ports 0..7 on tcp.
inline TransportOptions OptionsFor(const std::string& name) {
  TransportOptions o = PolicyFor(name);
  const std::string backend = o.backend;
  o.queue_capacity = 4;
  if (backend == "ipc") {
    char dir[] = "/tmp/lstXXXXXX";
    o.ipc_dir = mkdtemp(dir);
  }
  // tcp: 64 ports per test process (chips < 8, ports < 8 in these tests), below Linux's
  // ephemeral range (32768+) so that no outgoing connection holds one. ctest runs test processes
  // with nearby pids side by side; overlapping ranges once made a bind fail.
  o.tcp_ports_per_chip = 8;
  o.tcp_base_port = 10000 + static_cast<int>(getpid() % 350) * 64;
  return o;
}

inline uint8_t PatternByte(uint64_t seed, size_t i) {
  return static_cast<uint8_t>((seed * 131 + i * 31 + (i >> 8)) & 0xFF);
}

// An int8 tensor of `bytes` elements whose content is determined by `seed`.
inline Message Tensor(int64_t step, uint64_t tensor, size_t bytes, uint64_t seed) {
  Message m;
  m.header.schedule_id = 1;
  m.header.step = step;
  m.header.tensor_id = tensor;
  m.header.token_index = step;
  m.header.dtype = Dtype::kInt8;
  m.header.shape = {static_cast<int64_t>(bytes)};
  m.payload = Payload(bytes);
  std::byte* p = m.payload.data();
  for (size_t i = 0; i < bytes; ++i) p[i] = std::byte(PatternByte(seed, i));
  return m;
}

inline bool HasPattern(const Payload& payload, uint64_t seed) {
  auto b = payload.bytes();
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] != std::byte(PatternByte(seed, i))) return false;
  }
  return true;
}

inline Expect Want(int64_t step, uint64_t tensor) {
  Expect e;
  e.schedule_id = 1;
  e.step = step;
  e.tensor_id = tensor;
  return e;
}

struct Pair {
  std::unique_ptr<Endpoint> a;  // link.a's end
  std::unique_ptr<Endpoint> b;  // link.b's end
};

// Opens both ends concurrently (connection setup waits for the peer).
inline Pair OpenPair(Transport& t, const LinkSpec& link) {
  auto fb = std::async(std::launch::async, [&] { return t.Open(link, link.b, kWait); });
  Pair p;
  p.a = t.Open(link, link.a, kWait);
  p.b = fb.get();
  return p;
}

// Runs `fn`, expects lockstep::Error with `code` and a message containing every `needles`.
template <typename Fn>
std::string ExpectError(Fn&& fn, ErrorCode code, std::initializer_list<std::string> needles) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(ErrorCodeName(e.code()), ErrorCodeName(code)) << e.what();
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "'" << e.what() << "' lacks '" << n << "'";
    }
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

}  // namespace lockstep::transport::testing
