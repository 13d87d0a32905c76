#include "lockstep/worker/flight_recorder.h"

#include <algorithm>
#include <chrono>

#include "lockstep/common/error.h"

namespace lockstep::worker {

using control::ChipProgress;
using control::FlightEntry;
using control::StepTimes;

FlightRecorder::FlightRecorder(size_t capacity, ClockFn clock)
    : clock_(std::move(clock)), ring_(capacity) {
  if (capacity == 0) throw InvalidInput("flight recorder: capacity must be >= 1");
}

int64_t FlightRecorder::Now() const {
  if (clock_) return clock_();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void FlightRecorder::BeginStep(int64_t step) {
  const int64_t now = Now();
  std::lock_guard lock(mutex_);
  step_start_ns_ = now;
  running_times_ = StepTimes{};
  running_sent_.clear();
  progress_.step = step;
  progress_.running = true;
  progress_.current = FlightEntry{};
}

void FlightRecorder::BeginOp(FlightEntry entry) {
  const int64_t now = Now();
  std::lock_guard lock(mutex_);
  if (entry.step < 0) entry.step = progress_.step;
  entry.start_ns = now - step_start_ns_;
  entry.end_ns = -1;
  progress_.current = entry;
}

void FlightRecorder::EndOp() {
  const int64_t now = Now();
  std::lock_guard lock(mutex_);
  if (progress_.current.op < 0) return;
  FlightEntry& slot = ring_[next_];
  slot = progress_.current;
  slot.end_ns = now - step_start_ns_;
  running_times_.by_kind_ns[static_cast<size_t>(slot.kind)] += slot.end_ns - slot.start_ns;
  next_ = (next_ + 1) % ring_.size();
  ++recorded_;
  progress_.current = FlightEntry{};
}

void FlightRecorder::Sent(int32_t link, int32_t peer, int64_t bytes) {
  std::lock_guard lock(mutex_);
  auto it = std::lower_bound(running_sent_.begin(), running_sent_.end(), link,
                             [](const control::LinkBytes& l, int32_t id) { return l.link < id; });
  if (it == running_sent_.end() || it->link != link) {
    it = running_sent_.insert(it, control::LinkBytes{link, peer, 0});
  }
  it->bytes += bytes;
}

void FlightRecorder::EndStep() {
  const int64_t now = Now();
  std::lock_guard lock(mutex_);
  running_times_.step_ns = now - step_start_ns_;
  last_times_ = running_times_;
  last_sent_ = running_sent_;
  progress_.running = false;
  progress_.last_completed_step = progress_.step;
  progress_.current = FlightEntry{};
}

void FlightRecorder::CompleteStep(int64_t step) {
  std::lock_guard lock(mutex_);
  progress_.last_completed_step = std::max(progress_.last_completed_step, step);
}

std::vector<FlightEntry> FlightRecorder::Entries() const {
  std::lock_guard lock(mutex_);
  const size_t n = std::min<size_t>(ring_.size(), static_cast<size_t>(recorded_));
  std::vector<FlightEntry> out;
  out.reserve(n);
  // The oldest kept entry sits at next_ once the ring has wrapped, at 0 before.
  const size_t first = static_cast<size_t>(recorded_) > ring_.size() ? next_ : 0;
  for (size_t i = 0; i < n; ++i) out.push_back(ring_[(first + i) % ring_.size()]);
  return out;
}

ChipProgress FlightRecorder::Progress() const {
  const int64_t now = Now();
  std::lock_guard lock(mutex_);
  ChipProgress p = progress_;
  p.since_step_start_ns = p.running ? now - step_start_ns_ : 0;
  return p;
}

StepTimes FlightRecorder::LastStepTimes() const {
  std::lock_guard lock(mutex_);
  return last_times_;
}

std::vector<control::LinkBytes> FlightRecorder::LastStepSent() const {
  std::lock_guard lock(mutex_);
  return last_sent_;
}

int64_t FlightRecorder::recorded() const {
  std::lock_guard lock(mutex_);
  return recorded_;
}

}  // namespace lockstep::worker
