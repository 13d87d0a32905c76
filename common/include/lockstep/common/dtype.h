// Element types Lockstep knows, shared by the chip model (peak compute per type), the model
// description (weight bytes), and the wire format (tensor payloads). Plain enum + helpers; no
// state, thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lockstep {

enum class Dtype : uint8_t { kFp32 = 0, kFp16 = 1, kBf16 = 2, kInt8 = 3, kFp8 = 4 };

inline constexpr int kDtypeCount = 5;
inline constexpr std::array<Dtype, kDtypeCount> kAllDtypes = {
    Dtype::kFp32, Dtype::kFp16, Dtype::kBf16, Dtype::kInt8, Dtype::kFp8};

// Bytes per element.
int DtypeBytes(Dtype dtype);
// "fp32", "fp16", "bf16", "int8", "fp8".
std::string_view DtypeName(Dtype dtype);
// Inverse of DtypeName; nullopt for anything else.
std::optional<Dtype> ParseDtype(std::string_view name);

}  // namespace lockstep
