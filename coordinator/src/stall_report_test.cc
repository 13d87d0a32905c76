#include "stall_report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace lockstep::coordinator {
namespace {

using schedule::InstrKind;

ChipStall Finished(int32_t chip, int64_t step) {
  ChipStall c;
  c.chip = chip;
  c.finished = true;
  c.heard = true;
  c.progress.step = step;
  c.progress.last_completed_step = step;
  return c;
}

ChipStall Waiting(int32_t chip, int64_t step, int32_t op, InstrKind kind, int32_t link,
                  int32_t port, int32_t peer, int64_t waited_ms) {
  ChipStall c;
  c.chip = chip;
  c.heard = true;
  c.progress.step = step;
  c.progress.running = true;
  c.progress.last_completed_step = step - 1;
  c.progress.current = {step, op, kind, link, port, peer, 4096, 1'000'000, -1};
  c.progress.since_step_start_ns = 1'000'000 + waited_ms * 1'000'000;
  c.entries = {{step, op - 1, InstrKind::kCompute, -1, -1, -1, 0, 0, 1'000'000}};
  return c;
}

TEST(StallReport, NamesTheChipsBehindTheirOpAndLinkAndWhoFinished) {
  std::vector<ChipStall> chips;
  for (int32_t c : {4, 0, 2, 1, 3}) chips.push_back(Finished(c, 12));
  chips.push_back(Waiting(5, 12, 37, InstrKind::kRecv, 3, 2, 4, 2000));
  const StallReport r = AnalyzeStall(12, chips);
  EXPECT_EQ(r.finished, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(r.behind, (std::vector<int32_t>{5}));
  EXPECT_EQ(r.text,
            "step 12 stalled: chip 5 waits at step 12 op 37: recv on link 3 (port 2) from chip 4 "
            "for 2000 ms; chips 0-4 finished step 12");
}

TEST(StallReport, SeveralBehindForDifferentReasons) {
  std::vector<ChipStall> chips = {Finished(0, 3), Finished(2, 3),
                                  Waiting(1, 3, 5, InstrKind::kSend, 0, 0, 2, 10)};
  ChipStall silent;
  silent.chip = 6;
  silent.progress.last_completed_step = 2;
  ChipStall late;  // answered, still on the previous step
  late.chip = 7;
  late.heard = true;
  late.progress.step = 2;
  late.progress.last_completed_step = 2;
  ChipStall computing = Waiting(8, 3, 9, InstrKind::kCompute, -1, -1, -1, 1);
  chips.push_back(silent);
  chips.push_back(late);
  chips.push_back(computing);
  const StallReport r = AnalyzeStall(3, chips);
  EXPECT_EQ(r.behind, (std::vector<int32_t>{1, 6, 7, 8}));
  EXPECT_EQ(r.text,
            "step 3 stalled: chip 1 waits at step 3 op 5: send on link 0 (port 0) to chip 2 for "
            "10 ms; chip 6 does not answer (last completed step 2); chip 7 has not started step 3 "
            "(last completed step 2); chip 8 is at step 3 op 9: compute for 1 ms; chips 0,2 "
            "finished step 3");
}

TEST(StallReport, TheChipMostWaitOnIsTheSuspect) {
  // Chip 2's links are cut: 0 and 1 wait on it, 2 waits on 3, 3 finished.
  std::vector<ChipStall> chips = {Waiting(0, 8, 16, InstrKind::kRecv, 1, 1, 2, 1500),
                                  Waiting(1, 8, 16, InstrKind::kRecv, 7, 1, 2, 1500),
                                  Waiting(2, 8, 0, InstrKind::kRecv, 13, 2, 3, 1500),
                                  Finished(3, 8)};
  const StallReport r = AnalyzeStall(8, chips);
  EXPECT_EQ(r.suspect, 2);
  EXPECT_NE(r.text.find("; 2 chips wait on chip 2 (check its links)"), std::string::npos) << r.text;
  // One waiter each: nobody stands out.
  const StallReport even = AnalyzeStall(8, {chips[0], chips[2], chips[3]});
  EXPECT_EQ(even.suspect, -1);
  EXPECT_EQ(even.text.find("check its links"), std::string::npos) << even.text;
}

TEST(StallReport, ChipRangesAndJson) {
  EXPECT_EQ(ChipRanges({}), "");
  EXPECT_EQ(ChipRanges({3}), "3");
  EXPECT_EQ(ChipRanges({0, 1, 2, 4, 6, 7}), "0-2,4,6-7");
  std::vector<ChipStall> chips = {Waiting(1, 4, 2, InstrKind::kForward, 9, 3, 0, 5),
                                  Finished(0, 4)};
  const StallReport r = AnalyzeStall(4, chips);
  const nlohmann::json j = nlohmann::json::parse(StallJson(4, r, chips));
  EXPECT_EQ(j["step"], 4);
  EXPECT_EQ(j["report"], r.text);
  ASSERT_EQ(j["chips"].size(), 2u);
  EXPECT_EQ(j["chips"][0]["chip"], 0);  // sorted by chip
  EXPECT_EQ(j["chips"][1]["progress"]["current"]["kind"], "forward");
  EXPECT_EQ(j["chips"][1]["progress"]["current"]["link"], 9);
  EXPECT_EQ(j["chips"][1]["entries"].size(), 1u);
  EXPECT_EQ(j["chips"][1]["entries"][0]["end_ns"], 1'000'000);
}

}  // namespace
}  // namespace lockstep::coordinator
