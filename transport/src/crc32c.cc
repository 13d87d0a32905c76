#include "lockstep/transport/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
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

// Carry-less multiplication folding (Intel, "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ"), 64 bytes per 512-bit register, four registers in flight: ~2x the three crc32
// chains above (41 vs 22 GB/s on 64 KiB in cache, 27 vs 13 GB/s on 16 MiB on the project VM).
//
// In the reflected bit order of this CRC a 128-bit lane V is the polynomial Q0(x) x^64 + Q1(x)
// (Q0 its low quadword, holding the earliest bits), and pclmulqdq of two quadwords a, b yields
// A(x) B(x) x. Moving V forward by D bits (V x^D mod P) is therefore
//   clmul(Q0, x^(D+63) mod P) ^ clmul(Q1, x^(D-1) mod P),
// a 96-bit result that still fits in the lane; the next block is XORed onto it. Folding keeps
// the value congruent to the message polynomial M modulo P, so once everything is folded into
// one 128-bit R, CRC(M) = M x^32 mod P = R x^32 mod P: the crc32 instruction over R's 16 bytes
// from state 0 finishes the job (no Barrett reduction). A non-zero starting state is XORed into
// the first four bytes, which is what the crc32 instruction does with its register.

// x^n mod P as the 64-bit pclmulqdq operand of the reflected order (coefficient of x^d at bit
// 63 - d).
constexpr uint64_t XPowModP(uint64_t n) {
  uint64_t r = 1;
  for (uint64_t i = 0; i < n; ++i) {
    r <<= 1;
    if ((r & (uint64_t{1} << 32)) != 0) r ^= 0x11EDC6F41ull;  // P, normal order
  }
  uint64_t k = 0;
  for (int d = 0; d < 32; ++d) {
    if ((r & (uint64_t{1} << d)) != 0) k |= uint64_t{1} << (63 - d);
  }
  return k;
}

struct FoldConstants {
  uint64_t k0;  // multiplies the low quadword
  uint64_t k1;  // multiplies the high quadword
};
constexpr FoldConstants FoldBy(uint64_t bits) { return {XPowModP(bits + 63), XPowModP(bits - 1)}; }

// One 128-bit lane, shared by both folding widths below (only PCLMULQDQ and SSE4.2 needed).
#define LOCKSTEP_LANE_TARGET __attribute__((target("pclmul,sse4.2")))

// v x^D ^ next (k = FoldBy(D)).
LOCKSTEP_LANE_TARGET inline __m128i Fold(__m128i v, FoldConstants k, __m128i next) {
  const __m128i kk = _mm_set_epi64x(static_cast<long long>(k.k1), static_cast<long long>(k.k0));
  return _mm_xor_si128(
      _mm_xor_si128(_mm_clmulepi64_si128(v, kk, 0x00), _mm_clmulepi64_si128(v, kk, 0x11)), next);
}

// The raw CRC of the message whose everything is folded into the last lane r: the crc32
// instruction over r's 16 bytes from state 0 (see above).
LOCKSTEP_LANE_TARGET inline uint32_t LaneToRaw(__m128i r) {
  const uint64_t c64 = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(r)));
  return static_cast<uint32_t>(_mm_crc32_u64(c64, static_cast<uint64_t>(_mm_extract_epi64(r, 1))));
}

#define LOCKSTEP_FOLD_TARGET __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))

LOCKSTEP_FOLD_TARGET inline __m512i Broadcast(FoldConstants k) {
  const auto k0 = static_cast<long long>(k.k0);
  const auto k1 = static_cast<long long>(k.k1);
  return _mm512_set_epi64(k1, k0, k1, k0, k1, k0, k1, k0);
}

// v x^D ^ next in each 128-bit lane (k = FoldBy(D)).
LOCKSTEP_FOLD_TARGET inline __m512i Fold(__m512i v, __m512i k, __m512i next) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(v, k, 0x00),
                                   _mm512_clmulepi64_epi128(v, k, 0x11), next, 0x96);
}

constexpr size_t kFoldMinimum = 256;

// The raw CRC (no final xor) of (p, n), n >= kFoldMinimum, from raw state c.
LOCKSTEP_FOLD_TARGET uint32_t FoldRaw(const unsigned char* p, size_t n, uint32_t c) {
  __m512i x0 = _mm512_loadu_si512(p);
  __m512i x1 = _mm512_loadu_si512(p + 64);
  __m512i x2 = _mm512_loadu_si512(p + 128);
  __m512i x3 = _mm512_loadu_si512(p + 192);
  x0 = _mm512_xor_si512(x0, _mm512_castsi128_si512(_mm_cvtsi32_si128(static_cast<int>(c))));
  p += 256;
  n -= 256;
  const __m512i by2048 = Broadcast(FoldBy(2048));
  while (n >= 256) {
    x0 = Fold(x0, by2048, _mm512_loadu_si512(p));
    x1 = Fold(x1, by2048, _mm512_loadu_si512(p + 64));
    x2 = Fold(x2, by2048, _mm512_loadu_si512(p + 128));
    x3 = Fold(x3, by2048, _mm512_loadu_si512(p + 192));
    p += 256;
    n -= 256;
  }
  const __m512i by512 = Broadcast(FoldBy(512));
  __m512i x =
      Fold(x0, Broadcast(FoldBy(1536)), Fold(x1, Broadcast(FoldBy(1024)), Fold(x2, by512, x3)));
  while (n >= 64) {
    x = Fold(x, by512, _mm512_loadu_si512(p));
    p += 64;
    n -= 64;
  }
  // The four lanes through memory: _mm512_extracti32x4_epi32 trips GCC 12's -Wuninitialized
  // (its _mm_undefined_si128 operand).
  alignas(64) __m128i lane[4];
  _mm512_store_si512(lane, x);
  const __m128i r =
      Fold(lane[0], FoldBy(384), Fold(lane[1], FoldBy(256), Fold(lane[2], FoldBy(128), lane[3])));
  return HardwareRaw(p, n, LaneToRaw(r));
}

// The same folding on 256-bit registers, for CPUs with VPCLMULQDQ but without AVX-512 (AMD Zen 3,
// the project VM's CPU since session 9). There both this and the three crc32 chains reach ~8
// bytes a cycle (17-18 GB/s) on 64 KiB and 1 MiB in cache; this one is faster on 4 KiB (17 against
// 11-14 GB/s, no stripe combines) and on 16 MiB out of cache (7.3-8.9 against 6.7-7.5 GB/s),
// BENCHMARKS.md "Session 9". 32 bytes per register, four in flight, so the main loop moves each
// register 1024 bits ahead and the tail loop 256; the two 128-bit lanes end as above.
#define LOCKSTEP_FOLD256_TARGET __attribute__((target("avx2,vpclmulqdq,pclmul,sse4.2")))

LOCKSTEP_FOLD256_TARGET inline __m256i Broadcast256(FoldConstants k) {
  const auto k0 = static_cast<long long>(k.k0);
  const auto k1 = static_cast<long long>(k.k1);
  return _mm256_set_epi64x(k1, k0, k1, k0);
}

LOCKSTEP_FOLD256_TARGET inline __m256i Fold(__m256i v, __m256i k, __m256i next) {
  return _mm256_xor_si256(
      _mm256_xor_si256(_mm256_clmulepi64_epi128(v, k, 0x00), _mm256_clmulepi64_epi128(v, k, 0x11)),
      next);
}

LOCKSTEP_FOLD256_TARGET inline __m256i Load256(const unsigned char* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// FoldRaw on 256-bit registers; n >= kFoldMinimum.
LOCKSTEP_FOLD256_TARGET uint32_t FoldRaw256(const unsigned char* p, size_t n, uint32_t c) {
  __m256i x0 =
      _mm256_xor_si256(Load256(p), _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, static_cast<int>(c)));
  __m256i x1 = Load256(p + 32);
  __m256i x2 = Load256(p + 64);
  __m256i x3 = Load256(p + 96);
  p += 128;
  n -= 128;
  const __m256i by1024 = Broadcast256(FoldBy(1024));
  while (n >= 128) {
    x0 = Fold(x0, by1024, Load256(p));
    x1 = Fold(x1, by1024, Load256(p + 32));
    x2 = Fold(x2, by1024, Load256(p + 64));
    x3 = Fold(x3, by1024, Load256(p + 96));
    p += 128;
    n -= 128;
  }
  const __m256i by256 = Broadcast256(FoldBy(256));
  __m256i x =
      Fold(x0, Broadcast256(FoldBy(768)), Fold(x1, Broadcast256(FoldBy(512)), Fold(x2, by256, x3)));
  while (n >= 32) {
    x = Fold(x, by256, Load256(p));
    p += 32;
    n -= 32;
  }
  const __m128i r = Fold(_mm256_castsi256_si128(x), FoldBy(128), _mm256_extracti128_si256(x, 1));
  return HardwareRaw(p, n, LaneToRaw(r));
}

bool DetectHardware() { return __builtin_cpu_supports("sse4.2"); }
bool DetectFolding() {
  return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul") &&
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("vpclmulqdq");
}
bool DetectFolding256() {
  return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul") &&
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("vpclmulqdq");
}
#else
bool DetectHardware() { return false; }
bool DetectFolding() { return false; }
bool DetectFolding256() { return false; }
#endif

const bool kHaveHardware = DetectHardware();
const bool kHaveFolding = DetectFolding();
const bool kHaveFolding256 = DetectFolding256();

}  // namespace

uint32_t Crc32cPortable(std::span<const std::byte> data, uint32_t crc) {
  auto* p = reinterpret_cast<const unsigned char*>(data.data());
  return ~PortableRaw(p, data.size(), ~crc);
}

uint32_t Crc32cSse42(std::span<const std::byte> data, uint32_t crc) {
#if defined(__x86_64__)
  if (kHaveHardware) {
    return ~HardwareRaw3(reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~crc);
  }
#endif
  return Crc32cPortable(data, crc);
}

uint32_t Crc32c(std::span<const std::byte> data, uint32_t crc) {
#if defined(__x86_64__)
  if (auto folded = Crc32cFolding(data, crc, kHaveFolding ? 512 : 256)) return *folded;
  if (kHaveHardware) {
    return ~HardwareRaw3(reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~crc);
  }
#endif
  return Crc32cPortable(data, crc);
}

bool Crc32cHardwareAvailable() { return kHaveHardware; }

std::optional<uint32_t> Crc32cFolding(std::span<const std::byte> data, uint32_t crc, int bits) {
#if defined(__x86_64__)
  if (data.size() >= kFoldMinimum) {
    auto* p = reinterpret_cast<const unsigned char*>(data.data());
    if (bits == 512 && kHaveFolding) return ~FoldRaw(p, data.size(), ~crc);
    if (bits == 256 && kHaveFolding256) return ~FoldRaw256(p, data.size(), ~crc);
  }
#endif
  return std::nullopt;
}

const char* Crc32cImplementation() {
  return kHaveFolding      ? "vpclmulqdq-512"
         : kHaveFolding256 ? "vpclmulqdq-256"
         : kHaveHardware   ? "sse4.2"
                           : "portable";
}

}  // namespace lockstep::transport
