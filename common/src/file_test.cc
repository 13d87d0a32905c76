#include "lockstep/common/file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "lockstep/common/error.h"

namespace lockstep {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(WriteFileAtomically, ReplacesWholeAndLeavesNothingBehindOnFailure) {
  const std::string dir = ::testing::TempDir() + "lockstep_file_test";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/out.txt";
  WriteFileAtomically(path, "first");
  WriteFileAtomically(path, "second, longer");
  EXPECT_EQ(Read(path), "second, longer");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);  // no temporary file left
  // A folder that does not exist, and a path that is a folder: one error naming the path.
  try {
    WriteFileAtomically(dir + "/missing/out.txt", "x");
    ADD_FAILURE() << "wrote into a missing folder";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_EQ(std::string(e.what()).rfind("cannot write " + dir + "/missing/out.txt: ", 0), 0u)
        << e.what();
  }
  EXPECT_THROW(WriteFileAtomically(dir, "x"), Error);
  EXPECT_EQ(Read(path), "second, longer");
  std::filesystem::remove_all(dir);
}

TEST(File, ReadFileReadsItWholeOrNamesWhatIsMissing) {
  const std::string dir = ::testing::TempDir() + "lockstep_read_file_test";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/in.bin";
  const std::string bytes("a\0b\nc", 5);  // binary: a NUL and a newline survive
  WriteFileAtomically(path, bytes);
  EXPECT_EQ(ReadFile(path, "plan file"), bytes);
  try {
    ReadFile(dir + "/missing.plan", "plan file");
    ADD_FAILURE() << "read a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_EQ(std::string(e.what()), dir + "/missing.plan: no such plan file");
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lockstep
