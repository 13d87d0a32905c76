// Sampling with tp > 1 (strategies.h): every rank's (value, index) candidates go to rank 0, which
// picks the token.
#include "strategies.h"

namespace lockstep::schedule {

void GatherToRankZero(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                      int64_t bytes, int64_t overhead, partition::OpKind op) {
  Deps deps = data[0];
  for (size_t r = 1; r < chips.size(); ++r) {
    const Deps d = b.Transfer(chips[r], data[r], chips[0], bytes, Tag::kGather);
    deps.insert(deps.end(), d.begin(), d.end());
  }
  data[0] = {b.Compute(chips[0], deps, overhead, InstrKind::kReduce, Tag::kGather, op)};
}

}  // namespace lockstep::schedule
