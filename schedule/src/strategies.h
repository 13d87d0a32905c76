// The shapes the compiler lays collectives and stage-to-stage transfers out in, one per file, each
// a function over a PassBuilder with the same contract: `data[r]` is what rank r's next
// instruction waits for; a strategy emits its transfers and reduce steps and leaves in `data` what
// each rank (of the receiving group, for a hand-off) waits for afterwards. Every reduce step adds
// what it received in rank order (a fixed reduction order: bit-reproducible results).
#pragma once

#include <cstdint>
#include <vector>

#include "lockstep/partition/cost_model.h"
#include "pass_builder.h"

namespace lockstep::schedule {

using RankDeps = std::vector<Deps>;

// One step of a collective: every rank r sends to each rank j of `peers(r)` (in the order given)
// by `move(r, j, data[r])` (what rank j then waits for), then every rank reduces its own data and
// everything it received (a Reduce of `overhead` ns tagged `tag`).
template <typename Peers, typename Move>
void ExchangeStep(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data, Tag tag,
                  int64_t overhead, Peers peers, Move move) {
  const size_t g = chips.size();
  RankDeps in(g);
  for (size_t r = 0; r < g; ++r) {
    for (size_t j : peers(r)) {
      const Deps d = move(r, j, data[r]);
      in[j].insert(in[j].end(), d.begin(), d.end());
    }
  }
  for (size_t j = 0; j < g; ++j) {
    Deps deps = data[j];
    deps.insert(deps.end(), in[j].begin(), in[j].end());
    data[j] = {
        b.Compute(chips[j], deps, overhead, InstrKind::kReduce, tag, partition::OpKind::kMlp)};
  }
}

// All-reduce of each rank's `bytes`-byte partial over the TP group `chips`; each step ends with
// a Reduce of `overhead` ns on every rank.
using AllReduceFn = void (*)(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                             int64_t bytes, int64_t overhead);
// allreduce_exchange.cc: a fully connected group, every rank sending to every peer over its own
// link in one step — one-shot (each rank's whole partial; each rank combines all of them) or
// direct (reduce-scatter of bytes / group, then all-gather of the reduced segments).
void AllReduceOneShot(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                      int64_t bytes, int64_t overhead);
void AllReduceDirect(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                     int64_t bytes, int64_t overhead);
// allreduce_ring.cc: any group: 2 x (group - 1) steps of bytes / group to the next rank.
void AllReduceRing(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data, int64_t bytes,
                   int64_t overhead);
// allreduce_hierarchical.cc: a group of whole fully connected nodes (partition::
// HierarchicalNodeSize: runs of n consecutive ranks, one run per node): reduce-scatter inside
// each node (rank r gets bytes / n of segment r mod n from each node peer), then each rank
// exchanges its node's sum of that segment with the ranks of the same place in the other nodes
// (one-shot among them, tag kAllReduce, routed across the links joining the nodes), then
// all-gather inside the node: 3 steps instead of a ring's 2 x (group - 1).
void AllReduceHierarchical(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                           int64_t bytes, int64_t overhead);
// The strategy for the algorithm the cost model priced (partition::ChooseAllReduce).
AllReduceFn AllReduceFor(partition::AllReduceAlgorithm algorithm);

// gather.cc: every rank's `bytes` of sampling candidates to rank 0, which picks the token (a
// Reduce of `overhead` ns, op `op`). Afterwards only data[0] is meaningful.
void GatherToRankZero(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                      int64_t bytes, int64_t overhead, partition::OpKind op);

// A stage's output to the next group (`to`, in rank order): the first `active` ranks of `from`
// hold the result; afterwards `data` holds what each receiver waits for.
using HandOffFn = void (*)(PassBuilder& b, const std::vector<ChipId>& from, size_t active,
                           const std::vector<ChipId>& to, RankDeps& data, int64_t bytes, Tag tag);
// stage_handoff.cc: rank r of `to` receives from rank (r % active) of `from`, each over its own
// route. The sampled token goes back to every rank of stage 0 this way (each rank reads it).
void HandOff(PassBuilder& b, const std::vector<ChipId>& from, size_t active,
             const std::vector<ChipId>& to, RankDeps& data, int64_t bytes, Tag tag);
// activation_relay.cc: the routes between two stages' nodes are few (two links join a pair of
// nodes in a rack), so the activation crosses once per receiving node and spreads inside it: a
// receiver one hop from a sender gets it directly (from the least used sender); each other node
// of receivers gets it once, at a relay (its receiver nearest a sender), which sends it on to the
// node's others over their direct links after receiving it. Every choice follows from the
// topology alone (never from timing), so every phase of a schedule uses the same links: a
// worker opens its links once, from its decode program.
void RelayActivations(PassBuilder& b, const std::vector<ChipId>& from, size_t active,
                      const std::vector<ChipId>& to, RankDeps& data, int64_t bytes, Tag tag);

}  // namespace lockstep::schedule
