#include "lockstep/model/npy.h"

#include <fstream>
#include <string>

#include "lockstep/common/error.h"

namespace lockstep::model {

void WriteNpyFloat32(const std::filesystem::path& path, int64_t rows, int64_t cols,
                     std::span<const float> data) {
  if (rows < 0 || cols < 0 || static_cast<int64_t>(data.size()) != rows * cols) {
    throw InvalidInput(path.string() + ": npy shape (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + ") does not match " + std::to_string(data.size()) +
                       " values");
  }
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  // Magic (6) + version (2) + length (2) + header, padded with spaces and a final newline to a
  // multiple of 64 bytes, as the format asks.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorCode::kNotFound, path.string() + ": cannot create file");
  out.write("\x93NUMPY\x01\x00", 8);
  const char len[2] = {static_cast<char>(header.size() & 0xff),
                       static_cast<char>(header.size() >> 8)};
  out.write(len, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data.data()),
            static_cast<std::streamsize>(data.size() * sizeof(float)));
  out.close();
  if (!out) throw Error(ErrorCode::kUnavailable, path.string() + ": write failed (disk full?)");
}

}  // namespace lockstep::model
