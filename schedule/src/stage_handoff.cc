// A stage's output to the next group (strategies.h): every receiving rank gets its own copy from
// a sending rank that holds the result, over its own route.
#include "strategies.h"

namespace lockstep::schedule {

void HandOff(PassBuilder& b, const std::vector<ChipId>& from, size_t active,
             const std::vector<ChipId>& to, RankDeps& data, int64_t bytes, Tag tag) {
  RankDeps moved(to.size());
  for (size_t r = 0; r < to.size(); ++r) {
    const size_t src = r % active;
    moved[r] = b.Transfer(from[src], data[src], to[r], bytes, tag);
  }
  data = std::move(moved);
}

}  // namespace lockstep::schedule
