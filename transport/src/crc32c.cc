#include "lockstep/transport/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace lockstep::transport {
namespace {

constexpr uint32_t kPolyReflected = 0x82F63B78u;

// kTables[k][b]: CRC of byte b followed by k zero bytes; slicing-by-8 consumes 8 bytes per step.
constexpr std::array<std::array<uint32_t, 256>, 8> MakeTables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c & 1u) ? (c >> 1) ^ kPolyReflected : c >> 1;
    t[0][b] = c;
  }
  for (int k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  }
  return t;
}

constexpr auto kTables = MakeTables();

uint32_t PortableRaw(const unsigned char* p, size_t n, uint32_t c) {
  while (n >= 8) {
    uint32_t lo;
    uint32_t hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;  // little-endian host assumed (x86-64, aarch64)
    c = kTables[7][lo & 0xFF] ^ kTables[6][(lo >> 8) & 0xFF] ^ kTables[5][(lo >> 16) & 0xFF] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xFF] ^ kTables[2][(hi >> 8) & 0xFF] ^
        kTables[1][(hi >> 16) & 0xFF] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xFF];
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t HardwareRaw(const unsigned char* p, size_t n,
                                                       uint32_t c) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c64);
  while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

// The crc32 instruction has a latency of 3 cycles but a throughput of 1 per cycle: three
// independent streams over three stripes of a block run ~3x faster than one chain. The stripe
// CRCs are then combined: process(s, A B) = Z(process(s, A)) ^ process(0, B), where Z feeds
// `stripe` zero bytes and is linear in the register, so it is a 4 x 256 table lookup. Large
// buffers use 4 KiB stripes (the combine is rare), the rest of them and small tensors (>= 768
// bytes) 256-byte stripes, so a 4 KiB payload also runs three chains.
constexpr size_t kStripe = 4096;
constexpr size_t kSmallStripe = 256;

struct ShiftTables {
  uint32_t t[4][256];
};

ShiftTables MakeShift(size_t stripe) {
  ShiftTables st{};
  static const unsigned char zeros[kStripe] = {};
  for (int k = 0; k < 4; ++k) {
    for (uint32_t b = 0; b < 256; ++b) st.t[k][b] = HardwareRaw(zeros, stripe, b << (8 * k));
  }
  return st;
}

const ShiftTables& Shift(size_t stripe) {
  static const ShiftTables large = MakeShift(kStripe);
  static const ShiftTables small = MakeShift(kSmallStripe);
  return stripe == kStripe ? large : small;
}

uint32_t ShiftStripe(const ShiftTables& st, uint32_t c) {
  return st.t[0][c & 0xFF] ^ st.t[1][(c >> 8) & 0xFF] ^ st.t[2][(c >> 16) & 0xFF] ^
         st.t[3][c >> 24];
}

// Consumes whole blocks of three `stripe`-byte stripes from (p, n); returns the updated CRC.
template <size_t stripe>
__attribute__((target("sse4.2"))) uint32_t Blocks3(const unsigned char*& p, size_t& n, uint32_t c) {
  if (n < 3 * stripe) return c;
  const ShiftTables& st = Shift(stripe);
  while (n >= 3 * stripe) {
    uint64_t c0 = c;
    uint64_t c1 = 0;
    uint64_t c2 = 0;
    for (size_t i = 0; i < stripe; i += 8) {
      uint64_t v0;
      uint64_t v1;
      uint64_t v2;
      std::memcpy(&v0, p + i, 8);
      std::memcpy(&v1, p + stripe + i, 8);
      std::memcpy(&v2, p + 2 * stripe + i, 8);
      c0 = _mm_crc32_u64(c0, v0);
      c1 = _mm_crc32_u64(c1, v1);
      c2 = _mm_crc32_u64(c2, v2);
    }
    c = ShiftStripe(st, ShiftStripe(st, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1)) ^
        static_cast<uint32_t>(c2);
    p += 3 * stripe;
    n -= 3 * stripe;
  }
  return c;
}

uint32_t HardwareRaw3(const unsigned char* p, size_t n, uint32_t c) {
  c = Blocks3<kStripe>(p, n, c);
  c = Blocks3<kSmallStripe>(p, n, c);
  return HardwareRaw(p, n, c);
}

bool DetectHardware() { return __builtin_cpu_supports("sse4.2"); }
#else
bool DetectHardware() { return false; }
#endif

const bool kHaveHardware = DetectHardware();

}  // namespace

uint32_t Crc32cPortable(std::span<const std::byte> data, uint32_t crc) {
  auto* p = reinterpret_cast<const unsigned char*>(data.data());
  return ~PortableRaw(p, data.size(), ~crc);
}

uint32_t Crc32c(std::span<const std::byte> data, uint32_t crc) {
#if defined(__x86_64__)
  if (kHaveHardware) {
    return ~HardwareRaw3(reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~crc);
  }
#endif
  return Crc32cPortable(data, crc);
}

bool Crc32cHardwareAvailable() { return kHaveHardware; }

}  // namespace lockstep::transport
