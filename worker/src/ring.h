// What travels around a ring all-reduce (private to worker/), so that the rank completing a
// segment holds the reference's bits.
//
// The compiler lays out a ring of g ranks (a TP group that is not fully connected) as g - 1
// reduce-scatter steps and g - 1 all-gather steps; in each, rank r sends to rank r + 1 and
// receives from rank r - 1 (mod g), then reduces. Which segment of the hidden dimension a step
// carries is the runtime's convention (ScatterSegment, GatherSegment): rank j ends the
// reduce-scatter owning segment j, as in the direct exchange.
//
// A running float sum around the ring would add the ranks' partials in ring order, not in the
// canonical reduction tree (model/kernels.h), and change the bits. Instead a reduce-scatter
// message carries, for its segment's outputs, the sums of the canonical tree's nodes over the
// chunks of the ranks visited so far (NodeSums): the largest nodes inside that union of chunk
// ranges (at most two ranges, since the visited ranks are consecutive around the ring, so a few
// nodes per output). Each rank merges its own chunks into the largest nodes of the new union
// (Merge: each node's sum from its sub-nodes, in the tree's own order), and the last rank, whose
// nodes tile every chunk, combines them into the finished outputs (Finish). Embedding partials need
// no arithmetic: each row comes whole from the rank whose vocabulary slice holds its token, so the
// message carries the segment's rows picked so far (PickOwnRows).
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lockstep/model/kernels.h"
#include "lockstep/model/stage_shard.h"

namespace lockstep::worker::ring {

// The segment rank `rank` sends in reduce-scatter step `step` of a ring of `g`, and in all-gather
// step `step`. A rank receives in step s what rank - 1 sends in step s.
inline int ScatterSegment(int rank, int step, int g) { return ((rank - step - 1) % g + g) % g; }
inline int GatherSegment(int rank, int step, int g) { return ((rank - step) % g + g) % g; }

// The ranks whose chunks a reduce-scatter message of step `step` sent by `rank` holds: the
// `step + 1` ranks ending at `rank` (rank - step .. rank, mod g), in ring order.
std::vector<int> ScatterRanks(int rank, int step, int g);

// Sums of canonical tree nodes over a set of chunks of a contraction of `total` chunks, for
// `count` outputs of `rows` rows: `nodes` in chunk order, values[(row * nodes + k) * count + o]
// (the layout of model::Partial's tree-node sums).
struct NodeSums {
  std::vector<model::TreeNode> nodes;
  int64_t rows = 0;
  int64_t count = 0;
  std::vector<float> values;
};

// The largest tree nodes (of the canonical tree over [0, total)) inside the chunks of `ranks`,
// each rank holding chunks [rank * per_rank, (rank + 1) * per_rank), in chunk order.
std::vector<model::TreeNode> RankCover(int64_t total, int64_t per_rank, std::span<const int> ranks);

// Outputs [begin, end) of a row-parallel chunk partial (not tree-node sums, not reduced) as the
// sums of the largest nodes inside its chunks.
NodeSums FromPartial(const model::Partial& partial, int64_t total, int64_t begin, int64_t end);

// The union of two node sums over disjoint chunks (same rows and outputs) as the largest nodes
// of the union: bit for bit the canonical sums of those nodes. Throws Error (kInternal) for
// overlapping chunks or mismatched shapes.
NodeSums Merge(const NodeSums& a, const NodeSums& b, int64_t total);

// Node sums that tile [0, total) combined into the finished outputs, [rows, count], with
// bias[bias_begin + o] added to output o (bias may be empty): what model::CombineRowParallel
// gives for the same outputs. Throws Error (kInternal) if the nodes do not tile every chunk.
std::vector<float> Finish(const NodeSums& sums, int64_t total, const std::vector<float>& bias,
                          int64_t bias_begin);

// Embedding rows of a segment [begin, end): copies into `rows` ([tokens, end - begin]) the rows
// whose token lies in rank `rank`'s vocabulary slice (vocab * rank / tp ..) from that rank's
// embedding partial (all outputs); other rows are left as they are.
void PickOwnRows(const model::Partial& mine, std::span<const int32_t> tokens, int64_t vocab, int tp,
                 int rank, int64_t begin, int64_t end, std::span<float> rows);

}  // namespace lockstep::worker::ring
