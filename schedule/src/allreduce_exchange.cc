// All-reduce in a fully connected group: every rank sends to every peer over its own link in one
// step, then reduces what it received (strategies.h).
#include "strategies.h"

namespace lockstep::schedule {
namespace {

// One step: every rank sends `size` bytes to every peer (peer order r+1, r+2, ...), then each
// reduces its own data and everything it received.
void Exchange(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data, Tag tag,
              int64_t size, int64_t overhead) {
  const size_t g = chips.size();
  auto peers = [g](size_t r) {
    std::vector<size_t> out;
    for (size_t k = 1; k < g; ++k) out.push_back((r + k) % g);
    return out;
  };
  auto move = [&](size_t r, size_t j, const Deps& deps) {
    return b.Transfer(chips[r], deps, chips[j], size, tag);
  };
  ExchangeStep(b, chips, data, tag, overhead, peers, move);
}

}  // namespace

void AllReduceOneShot(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                      int64_t bytes, int64_t overhead) {
  Exchange(b, chips, data, Tag::kAllReduce, bytes, overhead);
}

void AllReduceDirect(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                     int64_t bytes, int64_t overhead) {
  const int64_t g = static_cast<int64_t>(chips.size());
  const int64_t chunk = (bytes + g - 1) / g;
  Exchange(b, chips, data, Tag::kReduceScatter, chunk, overhead);
  Exchange(b, chips, data, Tag::kAllGather, chunk, overhead);
}

AllReduceFn AllReduceFor(partition::AllReduceAlgorithm algorithm) {
  switch (algorithm) {
    case partition::AllReduceAlgorithm::kOneShot:
      return AllReduceOneShot;
    case partition::AllReduceAlgorithm::kDirect:
      return AllReduceDirect;
    case partition::AllReduceAlgorithm::kRing:
      return AllReduceRing;
    case partition::AllReduceAlgorithm::kHierarchical:
      return AllReduceHierarchical;
  }
  return AllReduceRing;
}

}  // namespace lockstep::schedule
