#include "lockstep/model/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "lockstep/common/error.h"

namespace lockstep::model {
namespace {

TEST(Npy, WritesAFloat32MatrixNumpyCanRead) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("lockstep_npy_" + std::to_string(::getpid()) + ".npy");
  const std::vector<float> data = {1.0f, -2.5f, 3.0f, 0.125f, 5.0f, 6.0f};
  WriteNpyFloat32(path, 2, 3, data);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(path);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  const std::string header = bytes.substr(10, header_len);
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos);
  EXPECT_NE(header.find("'shape': (2, 3)"), std::string::npos);
  EXPECT_EQ(header.back(), '\n');
  ASSERT_EQ(bytes.size(), 10 + header_len + data.size() * 4);
  std::vector<float> back(data.size());
  std::memcpy(back.data(), bytes.data() + 10 + header_len, back.size() * 4);
  EXPECT_EQ(back, data);
  EXPECT_THROW(WriteNpyFloat32(path, 2, 2, data), Error);
}

}  // namespace
}  // namespace lockstep::model
