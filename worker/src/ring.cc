#include "ring.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "lockstep/common/error.h"

namespace lockstep::worker::ring {
namespace {

using model::TreeNode;

[[noreturn]] void Internal(const std::string& what) {
  throw Error(ErrorCode::kInternal, "ring all-reduce: " + what);
}

// The largest nodes inside the union of `nodes` (in chunk order, disjoint): per maximal run of
// adjacent chunks, model::TreeNodes of the run.
std::vector<TreeNode> CoverOf(int64_t total, const std::vector<TreeNode>& nodes) {
  std::vector<TreeNode> out;
  for (size_t i = 0; i < nodes.size();) {
    size_t j = i + 1;
    while (j < nodes.size() && nodes[j].begin == nodes[j - 1].end) ++j;
    const std::vector<TreeNode> run = model::TreeNodes(total, nodes[i].begin, nodes[j - 1].end);
    out.insert(out.end(), run.begin(), run.end());
    i = j;
  }
  return out;
}

}  // namespace

std::vector<int> ScatterRanks(int rank, int step, int g) {
  std::vector<int> out;
  for (int k = step; k >= 0; --k) out.push_back(((rank - k) % g + g) % g);
  return out;
}

std::vector<TreeNode> RankCover(int64_t total, int64_t per_rank, std::span<const int> ranks) {
  std::vector<TreeNode> ranges;
  for (int r : ranks) ranges.push_back({r * per_rank, (r + 1) * per_rank});
  std::sort(ranges.begin(), ranges.end(),
            [](const TreeNode& a, const TreeNode& b) { return a.begin < b.begin; });
  return CoverOf(total, ranges);
}

NodeSums FromPartial(const model::Partial& p, int64_t total, int64_t begin, int64_t end) {
  if (p.kind != model::PartialKind::kRowParallel || p.tree_nodes || p.reduced) {
    Internal("only row-parallel chunk partials go around the ring as node sums");
  }
  const model::Partial nodes = p.Slice(begin, end - begin).TreeNodeSums(total);
  NodeSums out;
  out.nodes = model::TreeNodes(total, p.first_chunk, p.first_chunk + p.chunks);
  out.rows = p.rows;
  out.count = end - begin;
  out.values = nodes.values;
  return out;
}

NodeSums Merge(const NodeSums& a, const NodeSums& b, int64_t total) {
  if (a.rows != b.rows || a.count != b.count) {
    Internal("merging sums of " + std::to_string(a.rows) + " x " + std::to_string(a.count) +
             " and " + std::to_string(b.rows) + " x " + std::to_string(b.count) + " outputs");
  }
  // Every input node with where its values are, in chunk order.
  struct In {
    TreeNode node;
    const NodeSums* from;
    int64_t index;
  };
  std::vector<In> in;
  for (const NodeSums* s : {&a, &b}) {
    if (static_cast<int64_t>(s->values.size()) !=
        s->rows * static_cast<int64_t>(s->nodes.size()) * s->count) {
      Internal("node sums hold " + std::to_string(s->values.size()) + " values for " +
               std::to_string(s->nodes.size()) + " nodes");
    }
    for (size_t k = 0; k < s->nodes.size(); ++k)
      in.push_back({s->nodes[k], s, static_cast<int64_t>(k)});
  }
  std::sort(in.begin(), in.end(),
            [](const In& x, const In& y) { return x.node.begin < y.node.begin; });
  std::vector<TreeNode> sorted;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].node.end <= in[i].node.begin || (i > 0 && in[i].node.begin < in[i - 1].node.end)) {
      Internal("the chunks of two ring messages overlap at chunk " +
               std::to_string(in[i].node.begin));
    }
    sorted.push_back(in[i].node);
  }
  NodeSums out;
  out.nodes = CoverOf(total, sorted);
  out.rows = a.rows;
  out.count = a.count;
  const auto k_out = static_cast<int64_t>(out.nodes.size());
  out.values.resize(static_cast<size_t>(out.rows * k_out * out.count));
  size_t next = 0;  // the first input node not yet merged
  std::vector<TreeNode> sub;
  std::vector<size_t> parts;
  std::vector<const float*> ptrs;
  for (int64_t j = 0; j < k_out; ++j) {
    const TreeNode n = out.nodes[static_cast<size_t>(j)];
    // The input nodes inside n tile it (both are nodes of one tree): n's sum is the tree over
    // n's own chunks of their sums, whose shape does not depend on where n starts.
    sub.clear();
    parts.clear();
    while (next < in.size() && in[next].node.end <= n.end) {
      sub.push_back({in[next].node.begin - n.begin, in[next].node.end - n.begin});
      parts.push_back(next++);
    }
    ptrs.resize(parts.size());
    for (int64_t r = 0; r < out.rows; ++r) {
      for (size_t i = 0; i < parts.size(); ++i) {
        const In& x = in[parts[i]];
        ptrs[i] = x.from->values.data() +
                  (r * static_cast<int64_t>(x.from->nodes.size()) + x.index) * x.from->count;
      }
      float* dst = out.values.data() + (r * k_out + j) * out.count;
      try {
        model::TreeCombineRows(sub, ptrs, n.end - n.begin, out.count, dst);
      } catch (const std::invalid_argument& e) {
        Internal(std::string("merging node [") + std::to_string(n.begin) + ", " +
                 std::to_string(n.end) + "): " + e.what());
      }
    }
  }
  return out;
}

std::vector<float> Finish(const NodeSums& s, int64_t total, const std::vector<float>& bias,
                          int64_t bias_begin) {
  const auto k = static_cast<int64_t>(s.nodes.size());
  if (static_cast<int64_t>(s.values.size()) != s.rows * k * s.count) {
    Internal("node sums hold " + std::to_string(s.values.size()) + " values for " +
             std::to_string(k) + " nodes");
  }
  std::vector<float> out(static_cast<size_t>(s.rows * s.count));
  std::vector<const float*> ptrs(static_cast<size_t>(k));
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t i = 0; i < k; ++i)
      ptrs[static_cast<size_t>(i)] = s.values.data() + (r * k + i) * s.count;
    try {
      model::TreeCombineRows(s.nodes, ptrs, total, s.count, out.data() + r * s.count);
    } catch (const std::invalid_argument& e) {
      Internal(std::string("finishing a segment: ") + e.what());
    }
  }
  if (!bias.empty()) {
    for (int64_t r = 0; r < s.rows; ++r) {
      for (int64_t o = 0; o < s.count; ++o) {
        out[static_cast<size_t>(r * s.count + o)] += bias[static_cast<size_t>(bias_begin + o)];
      }
    }
  }
  return out;
}

void PickOwnRows(const model::Partial& mine, std::span<const int32_t> tokens, int64_t vocab, int tp,
                 int rank, int64_t begin, int64_t end, std::span<float> rows) {
  const int64_t n = end - begin;
  const int64_t lo = vocab * rank / tp;
  const int64_t hi = vocab * (rank + 1) / tp;
  if (static_cast<int64_t>(rows.size()) != static_cast<int64_t>(tokens.size()) * n ||
      mine.rows != static_cast<int64_t>(tokens.size()) || begin < mine.out_begin ||
      end > mine.out_begin + mine.out_count) {
    Internal("embedding rows of the wrong shape");
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < lo || tokens[i] >= hi) continue;
    std::copy_n(
        mine.values.begin() + static_cast<int64_t>(i) * mine.out_count + (begin - mine.out_begin),
        n, rows.begin() + static_cast<int64_t>(i) * n);
  }
}

}  // namespace lockstep::worker::ring
