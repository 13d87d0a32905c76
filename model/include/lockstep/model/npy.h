// Writing NumPy .npy files (format 1.0): a float32 matrix, C order, for logits dumps that
// numpy.load reads directly. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

namespace lockstep::model {

// Writes a [rows, cols] little-endian float32 array. `data.size()` must be rows * cols. Throws
// Error naming the path when the file cannot be written.
void WriteNpyFloat32(const std::filesystem::path& path, int64_t rows, int64_t cols,
                     std::span<const float> data);

}  // namespace lockstep::model
