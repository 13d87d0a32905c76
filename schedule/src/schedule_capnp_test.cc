#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "lockstep/common/error.h"
#include "lockstep/schedule/compact.h"
#include "lockstep/schedule/program_codec.h"
#include "lockstep/schedule/schedule_file.h"
#include "lockstep/schedule/simulate.h"
#include "test_util.h"

namespace lockstep::schedule {
namespace {

struct Sample {
  partition::ModelSpec spec = testing::SmallModel();
  topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  partition::Plan plan = testing::LayoutPlan(spec, topo, {{3, 8}, {3, 8}, {2, 4}});
  CompactSchedule Compile() const {
    ScheduleOptions o;
    o.tokens = 2;
    o.sequences = 3;
    o.prefill = true;
    o.prompt_len = 100;
    o.prefill_chunk = 64;
    return CompileCompact(plan, spec, topo, o);
  }
};

std::string Path(const std::string& name) { return ::testing::TempDir() + name; }

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// The message of the first Error `fn` throws ("" when none).
template <typename Fn>
std::string ErrorOf(const Fn& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ScheduleFile, RoundTripGivesTheSameScheduleAndBytes) {
  const Sample x;
  const CompactSchedule s = x.Compile();
  ASSERT_EQ(s.phases.size(), 2u + 1u);  // prompt chunks, the last chunk, decode
  const std::string bytes = SerializeScheduleFile(s);
  const CompactSchedule back = ParseScheduleFile(bytes, "mem");
  EXPECT_EQ(back, s);
  EXPECT_EQ(SerializeScheduleFile(back), bytes);
  // Byte-identical across compiles.
  EXPECT_EQ(SerializeScheduleFile(x.Compile()), bytes);
  // What a worker reads is what the simulator ran.
  EXPECT_EQ(Simulate(back, x.topo).metrics.makespan_ns, Simulate(s, x.topo).metrics.makespan_ns);
}

TEST(ScheduleFile, OneChipIsReadAloneAndGivesTheSameStep) {
  const Sample x;
  const CompactSchedule s = x.Compile();
  const std::string path = Path("lockstep_one_chip.schedule");
  WriteScheduleFile(path, s);
  for (const CompactChip& c : s.chips) {
    const ChipScheduleFile one = ReadChipSchedule(path, c.chip, &x.plan);
    ASSERT_EQ(one.schedule.chips.size(), 1u);
    EXPECT_EQ(one.schedule.chips.front(), c);
    EXPECT_EQ(one.schedule.phases, s.phases);
    EXPECT_EQ(DecodePeriodProgram(one.schedule, c.chip), DecodePeriodProgram(s, c.chip));
    EXPECT_EQ(DecodePeriodIncoming(one.schedule, one.incoming),
              DecodePeriodIncoming(s, IncomingOf(s, c.chip)));
    EXPECT_EQ(PrefillPassIncoming(one.schedule, one.incoming, 1),
              PrefillPassIncoming(s, IncomingOf(s, c.chip), 1));
  }
  // A chip without a program names the chips there are.
  EXPECT_NE(ErrorOf([&] {
              ReadChipSchedule(path, 1000, &x.plan);
            }).find("no program for chip 1000 (it has "),
            std::string::npos);
  std::filesystem::remove(path);
}

TEST(ScheduleFile, WritesAtomicallyAndJsonIsTheJsonForm) {
  const Sample x;
  const CompactSchedule s = x.Compile();
  const std::string path = Path("lockstep_schedule_test.schedule");
  WriteScheduleFile(path, s);
  EXPECT_EQ(ReadScheduleFile(path, &x.plan), s);
  // No temporary file is left beside it.
  size_t beside = 0;
  for (const auto& e : std::filesystem::directory_iterator(::testing::TempDir())) {
    beside += e.path().filename().string().rfind("lockstep_schedule_test.schedule.tmp", 0) == 0;
  }
  EXPECT_EQ(beside, 0u);
  const std::string json = Path("lockstep_schedule_test.json");
  WriteScheduleFile(json, s);
  EXPECT_EQ(ReadBytes(json), ScheduleToJson(s));
  // An unwritable place is one error naming the path; an existing file there is untouched.
  const std::string error = ErrorOf([&] { WriteScheduleFile("/nonexistent-dir/s.schedule", s); });
  EXPECT_NE(error.find("cannot write /nonexistent-dir/s.schedule"), std::string::npos) << error;
  EXPECT_EQ(ErrorOf([&] { ReadScheduleFile(Path("no-such.schedule")); }).find("no-such.schedule"),
            Path("").size());
  std::filesystem::remove(path);
  std::filesystem::remove(json);
}

TEST(ScheduleFile, RefusesTruncatedOtherVersionsAndOtherPlansNamingWhatDiffers) {
  const Sample x;
  const std::string bytes = SerializeScheduleFile(x.Compile());
  const std::string path = Path("lockstep_bad.schedule");
  auto read_whole = [&](const std::string& b) {
    WriteBytes(path, b);
    return ErrorOf([&] { ReadScheduleFile(path); });
  };
  auto read_chip = [&](const std::string& b) {
    WriteBytes(path, b);
    return ErrorOf([&] { ReadChipSchedule(path, x.plan.stages[0].chips[0]); });
  };
  for (const auto& read : {std::function<std::string(const std::string&)>(read_whole),
                           std::function<std::string(const std::string&)>(read_chip)}) {
    // Truncated anywhere: in the preamble, the header, or the chips' messages.
    for (size_t keep : {size_t{0}, size_t{10}, size_t{40}, bytes.size() / 2, bytes.size() - 8}) {
      const std::string e = read(bytes.substr(0, keep));
      EXPECT_EQ(e.rfind(path + ": ", 0), 0u) << e;
      EXPECT_NE(e.find("truncated"), std::string::npos) << keep << ": " << e;
    }
    // Another version.
    std::string v3 = bytes;
    v3[8] = 3;
    EXPECT_NE(read(v3).find("format version 3, this lockstep reads version 2"), std::string::npos)
        << read(v3);
    // Not a schedule at all (a version-1 file began with a Cap'n Proto segment table).
    std::string old = bytes;
    old.replace(0, 8, std::string(8, '\0'));
    EXPECT_NE(read(old).find("not a Lockstep schedule file of format version 2"),
              std::string::npos);
  }
  // A garbled chip message is refused naming the chip: the first one's segment table.
  uint64_t header = 0;
  for (int i = 0; i < 8; ++i) header |= uint64_t{static_cast<uint8_t>(bytes[16 + i])} << (8 * i);
  std::string garbled = bytes;
  for (size_t i = 24 + header; i < 24 + header + 8; ++i) garbled[i] = '\xff';
  const std::string e = read_whole(garbled);
  EXPECT_NE(e.find("not a Lockstep schedule: chip "), std::string::npos) << e;
  // Another plan: another layout of the same model on the same topology, another model.
  WriteBytes(path, bytes);
  const partition::Plan other = testing::LayoutPlan(x.spec, x.topo, {{4, 8}, {4, 8}});
  const std::string differs = ErrorOf([&] { ReadScheduleFile(path, &other); });
  EXPECT_NE(differs.find(path + ": compiled for another plan of small on rack"), std::string::npos)
      << differs;
  partition::Plan renamed = x.plan;
  renamed.model = "other";
  EXPECT_NE(ErrorOf([&] {
              ReadChipSchedule(path, x.plan.stages[0].chips[0], &renamed);
            }).find("compiled for model 'small', not the plan's 'other'"),
            std::string::npos);
  std::filesystem::remove(path);
}

TEST(ProgramCodec, RoundTripsAndRefusesMalformedPrograms) {
  const Sample x;
  const CompactSchedule s = x.Compile();
  const ChipProgram p = DecodePeriodProgram(s, s.chips.front().chip);
  const std::vector<std::byte> bytes = SerializeProgram(p);
  EXPECT_EQ(ParseProgram(bytes, "chip"), p);
  std::vector<std::byte> cut(bytes.begin(),
                             bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2));
  EXPECT_THROW(ParseProgram(cut, "chip"), Error);
}

}  // namespace
}  // namespace lockstep::schedule
