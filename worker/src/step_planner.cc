#include "step_planner.h"

#include <algorithm>

#include "lockstep/common/error.h"

namespace lockstep::worker {

namespace {

constexpr uint64_t kSlotBits = 14, kBucketBits = 8, kAdmissionBits = 40;

}  // namespace

uint64_t EncodeStepKind(const StepKind& k) {
  if (k.slot < 0 || static_cast<uint64_t>(k.slot) >= (uint64_t{1} << kSlotBits) || k.bucket < 0 ||
      static_cast<uint64_t>(k.bucket) >= (uint64_t{1} << kBucketBits) || k.admission < 0 ||
      static_cast<uint64_t>(k.admission) >= (uint64_t{1} << kAdmissionBits)) {
    throw InvalidInput("step kind: slot " + std::to_string(k.slot) + ", bucket " +
                       std::to_string(k.bucket) + " or admission " + std::to_string(k.admission) +
                       " out of range");
  }
  // [63:62] kind + 1 (0 = none), [61:48] slot, [47:40] bucket, [39:0] admission.
  return (static_cast<uint64_t>(k.kind) + 1) << 62 | static_cast<uint64_t>(k.slot) << 48 |
         static_cast<uint64_t>(k.bucket) << 40 | static_cast<uint64_t>(k.admission);
}

std::optional<StepKind> DecodeStepKind(uint64_t code) {
  if (code == 0) return std::nullopt;
  const uint64_t kind = (code >> 62) - 1;
  StepKind k;
  k.kind = static_cast<StepKind::Kind>(kind);
  k.slot = static_cast<int32_t>((code >> 48) & ((uint64_t{1} << kSlotBits) - 1));
  k.bucket = static_cast<int32_t>((code >> 40) & ((uint64_t{1} << kBucketBits) - 1));
  k.admission = static_cast<int64_t>(code & ((uint64_t{1} << kAdmissionBits) - 1));
  if (kind > StepKind::kStop || (k.kind != StepKind::kPrefill && (code << 2) != 0)) {
    throw Error(ErrorCode::kProtocol, "step kind code " + std::to_string(code) + " is not one");
  }
  return k;
}

StepPlanner::StepPlanner(int32_t slots, std::vector<int64_t> buckets, int lookahead)
    : buckets_(std::move(buckets)),
      occupied_(static_cast<size_t>(std::max(0, slots)), false),
      next_step_(lookahead) {
  if (slots < 1 || lookahead < 1) {
    throw InvalidInput("step planner: slots and lookahead must be >= 1");
  }
}

std::optional<std::string> StepPlanner::Offer(const Admission& a) {
  if (a.number != next_number_) {
    return "admission " + std::to_string(a.number) + " came while " + std::to_string(next_number_) +
           " is next in the log";
  }
  if (a.step < next_step_) {
    return "admission " + std::to_string(a.number) + " names step " + std::to_string(a.step) +
           ", already decided (steps up to " + std::to_string(next_step_ - 1) + ")";
  }
  const int64_t length = static_cast<int64_t>(a.tokens.size());
  if (length < 1 || buckets_.empty() || length > buckets_.back()) {
    return "admission " + std::to_string(a.number) + " has " + std::to_string(length) +
           " tokens to prefill; the prefill programs take 1 to " +
           std::to_string(buckets_.empty() ? 0 : buckets_.back());
  }
  if (a.generated < 0 || a.max_new <= a.generated) {
    return "admission " + std::to_string(a.number) + " has nothing to generate (max_new " +
           std::to_string(a.max_new) + ", generated " + std::to_string(a.generated) + ")";
  }
  waiting_.push_back(a);
  ++next_number_;
  return std::nullopt;
}

void StepPlanner::Free(int32_t slot) {
  if (slot < 0 || static_cast<size_t>(slot) >= occupied_.size() ||
      !occupied_[static_cast<size_t>(slot)]) {
    throw Error(ErrorCode::kProtocol,
                "step planner: slot " + std::to_string(slot) + " is not occupied, cannot free it");
  }
  occupied_[static_cast<size_t>(slot)] = false;
}

bool StepPlanner::busy() const {
  return !waiting_.empty() ||
         std::find(occupied_.begin(), occupied_.end(), true) != occupied_.end();
}

std::optional<StepKind> StepPlanner::Decide() {
  StepKind k;
  const auto free = std::find(occupied_.begin(), occupied_.end(), false);
  if (!waiting_.empty() && waiting_.front().step <= next_step_ && free != occupied_.end()) {
    const Admission& a = waiting_.front();
    k.kind = StepKind::kPrefill;
    k.slot = static_cast<int32_t>(free - occupied_.begin());
    k.bucket = static_cast<int32_t>(
        std::lower_bound(buckets_.begin(), buckets_.end(), static_cast<int64_t>(a.tokens.size())) -
        buckets_.begin());
    k.admission = a.number;
    *free = true;
    waiting_.pop_front();
  } else if (!busy()) {
    if (!closed_) return std::nullopt;
    k.kind = StepKind::kStop;
  }
  ++next_step_;
  return k;
}

}  // namespace lockstep::worker
