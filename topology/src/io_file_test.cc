// Topology files on disk: SaveTopology is atomic, LoadTopology's errors name the path.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "io_test_util.h"
#include "lockstep/topology/generators.h"
#include "lockstep/topology/io.h"

namespace lockstep::topology {
namespace {

using io_test::ExpectSameTopology;
using io_test::MixedTopology;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// --- Files ---------------------------------------------------------------------------------------

class TopologyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("lockstep_io_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Entries of the test directory (a failed save must leave no temporary file behind).
  int EntryCount() const {
    return static_cast<int>(std::distance(std::filesystem::directory_iterator(dir_),
                                          std::filesystem::directory_iterator()));
  }

  std::filesystem::path dir_;
};

TEST_F(TopologyFileTest, SaveThenLoad) {
  const Topology topo = MixedTopology();
  const std::string path = (dir_ / "mixed.yaml").string();
  SaveTopology(topo, path);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), WriteTopologyYaml(topo));
  ExpectSameTopology(topo, LoadTopology(path));
  EXPECT_EQ(EntryCount(), 1) << "no temporary file left";
  // Saving again replaces the file.
  SaveTopology(GenerateRing(LpuV1(), 3), path);
  EXPECT_EQ(LoadTopology(path).chip_count(), 3);
  EXPECT_EQ(EntryCount(), 1);
}

TEST_F(TopologyFileTest, LoadErrorsNameThePath) {
  const std::string path = (dir_ / "bad.yaml").string();
  std::ofstream(path) << "format: lockstep-topology/1\nchip_specs: []\nchips:\n  - {id: 0}\n";
  try {
    LoadTopology(path);
    FAIL() << "loaded a bad file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_THAT(e.what(), StartsWith(path + ":4: chips[0]: missing field 'node'"));
  }
}

TEST_F(TopologyFileTest, LoadMissingFileIsNotFound) {
  const std::string path = (dir_ / "nope.yaml").string();
  try {
    LoadTopology(path);
    FAIL() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr(path));
  }
}

TEST_F(TopologyFileTest, LoadDirectoryIsInvalidInput) {
  try {
    LoadTopology(dir_.string());
    FAIL() << "loaded a directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_THAT(e.what(), HasSubstr(dir_.string()));
    EXPECT_THAT(e.what(), HasSubstr("directory"));
  }
}

TEST_F(TopologyFileTest, SaveIntoMissingDirectoryIsNotFound) {
  const std::string path = (dir_ / "no" / "such" / "dir.yaml").string();
  try {
    SaveTopology(GenerateNode(LpuV1()), path);
    FAIL() << "saved into a missing directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr(path));
  }
}

TEST_F(TopologyFileTest, FailedSaveLeavesNoPartialFile) {
  // The target is a directory, so the final rename fails after the data was written.
  const std::filesystem::path target = dir_ / "taken";
  std::filesystem::create_directory(target);
  try {
    SaveTopology(GenerateNode(LpuV1()), target.string());
    FAIL() << "saved over a directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_THAT(e.what(), HasSubstr(target.string()));
  }
  EXPECT_EQ(EntryCount(), 1) << "only the directory, no temporary file";
  EXPECT_TRUE(std::filesystem::is_directory(target));
}

}  // namespace
}  // namespace lockstep::topology
