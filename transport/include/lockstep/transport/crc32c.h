// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected; init and final xor 0xFFFFFFFF), the
// checksum every transport payload carries in its frame header. Pure functions, thread-safe.
// Chosen once at run time on x86-64: carry-less multiplication folding for buffers of 256 bytes
// and more (VPCLMULQDQ on 512-bit registers with AVX-512, else on 256-bit ones with AVX2), else
// three interleaved chains of the SSE4.2 crc32 instruction, else a slicing-by-8 table. All give
// bit-identical results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace lockstep::transport {

// CRC32C of `data`. To checksum a buffer in pieces pass the previous result as `crc`:
// Crc32c(b, Crc32c(a)) == Crc32c(a ++ b).
uint32_t Crc32c(std::span<const std::byte> data, uint32_t crc = 0);

// The slicing-by-8 table implementation, always (tests compare it with the hardware path).
uint32_t Crc32cPortable(std::span<const std::byte> data, uint32_t crc = 0);

// The SSE4.2 path alone (portable without SSE4.2), always: tests compare it with the others.
uint32_t Crc32cSse42(std::span<const std::byte> data, uint32_t crc = 0);

// One folding path alone, for tests to compare with the others: `bits` 512 (AVX-512) or 256
// (AVX2), on a buffer of at least 256 bytes. std::nullopt when this CPU lacks that path (or the
// buffer is shorter).
std::optional<uint32_t> Crc32cFolding(std::span<const std::byte> data, uint32_t crc, int bits);

// True when Crc32c uses the SSE4.2 crc32 instruction on this CPU.
bool Crc32cHardwareAvailable();

// The path Crc32c takes for large buffers here: "vpclmulqdq-512", "vpclmulqdq-256", "sse4.2" or
// "portable".
const char* Crc32cImplementation();

}  // namespace lockstep::transport
