// All-reduce over any group as a ring in rank order (strategies.h): 2 x (group - 1) steps, each
// rank sending bytes / group to the next rank and reducing what it received.
#include "strategies.h"

namespace lockstep::schedule {

void AllReduceRing(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data, int64_t bytes,
                   int64_t overhead) {
  const size_t g = chips.size();
  const int64_t chunk = (bytes + static_cast<int64_t>(g) - 1) / static_cast<int64_t>(g);
  for (size_t s = 0; s < 2 * (g - 1); ++s) {
    const Tag tag = s + 1 < g ? Tag::kReduceScatter : Tag::kAllGather;
    RankDeps in(g);
    for (size_t r = 0; r < g; ++r) {
      in[(r + 1) % g] = b.Transfer(chips[r], data[r], chips[(r + 1) % g], chunk, tag);
    }
    for (size_t r = 0; r < g; ++r) {
      Deps deps = data[r];
      deps.insert(deps.end(), in[r].begin(), in[r].end());
      data[r] = {
          b.Compute(chips[r], deps, overhead, InstrKind::kReduce, tag, partition::OpKind::kMlp)};
    }
  }
}

}  // namespace lockstep::schedule
