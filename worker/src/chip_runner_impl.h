// ChipRunner's insides, shared by its two ways of running a program (chip_runner.cc: one step at
// a time as the coordinator's Step says; self_clocked.cc: step after step on its own): the
// per-slot state of a step and the executor of each instruction kind. Private to worker/.
#pragma once

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>

#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"
#include "lockstep/worker/chip_runner.h"
#include "ring.h"

namespace lockstep::worker {

using control::FlightEntry;
using control::SlotResult;
using control::SlotWork;
using control::Step;

namespace internal {

using partition::OpKind;
using schedule::InstrKind;
using schedule::Instruction;
using schedule::Tag;

// Keeps a float vector alive as a transport payload (no copy on send).
class FloatOwner : public transport::Payload::Owner {
 public:
  explicit FloatOwner(std::vector<float> v) : v_(std::move(v)) {}
  std::byte* data() { return reinterpret_cast<std::byte*>(v_.data()); }

 private:
  std::vector<float> v_;
};

inline transport::Payload ToPayload(std::vector<float> v) {
  const size_t bytes = v.size() * sizeof(float);
  auto owner = std::make_unique<FloatOwner>(std::move(v));
  std::byte* data = owner->data();
  return transport::Payload(data, bytes, std::move(owner));
}

inline std::vector<float> ToFloats(const transport::Payload& p) {
  std::vector<float> v(p.size() / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), p.bytes().data(), v.size() * sizeof(float));
  return v;
}

inline int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

enum class Collective { kNone, kEmbedding, kAttention, kMlp };

// One all-reduce of one slot: this rank's partial, every rank's slice of this rank's segment
// (reduce-scatter; one-shot: every peer's whole partial), the combined segments (all-gather) and
// the assembled result. Messages of a
// collective may come before this rank computes its own partial (its compute unit was busy
// with another slot), and its own all-gather sends may go after its all-gather Reduce (its
// links were busy), so each collective keeps its own state for the whole step.
struct CollectiveState {
  std::optional<model::Partial> mine;
  std::optional<model::Partial> mine_nodes;  // one-shot, row-parallel: mine as tree-node sums
  std::map<int, model::Partial> parts;  // rank -> slice of my segment (one-shot: whole partial)
  std::map<int, std::vector<float>> segments;
  std::vector<float> result;  // [rows, hidden] once the all-gather is reduced
  // Ring reduce-scatter (ring.h), by step: what arrived from rank - 1 and what goes on to
  // rank + 1 (row-parallel: node sums; embedding: the segment's rows picked so far). A step's
  // message may arrive before the previous step's Reduce ran, so each step keeps its own.
  std::map<int, ring::NodeSums> arrived_sums, outgoing_sums;
  std::map<int, std::vector<float>> arrived_rows, outgoing_rows;
  // Hierarchical (schedule's AllReduceHierarchical): this node's sum of this rank's segment
  // (row-parallel: canonical tree-node sums over the node's chunks, ring.h; embedding: the rows
  // whose token the node's ranks hold) and the other nodes' sums of it, by their first rank.
  // Kept until the step ends: this rank's own send across may follow its combine.
  std::optional<ring::NodeSums> node_sums;
  std::optional<std::vector<float>> node_rows;
  std::map<int, ring::NodeSums> across_sums;
  std::map<int, std::vector<float>> across_rows;
};

// A collective is named by its layer (-1: the embedding) and its ordinal in the layer
// (0: after the o projection, 1: after the MLP).
using CollectiveKey = std::pair<int64_t, int>;

// Which collective an instruction belongs to, and which of its steps (ring: 0 .. tp - 2 per
// phase; 0 otherwise).
struct CollectiveStep {
  CollectiveKey key;
  int step = 0;
};

// One slot's state during one step.
struct SlotState {
  const SlotWork* work = nullptr;  // null: idle this step
  int64_t rows = 0;
  // Run: whether the slot's work in this step is known yet (a chip past stage 0 learns it from
  // the first message of the slot's step: rows 0 = idle), the work made here, the request's
  // tokens in all (the sampling chip: the token drawn with index max_new - 1 is its last), and
  // the token the sampling chip sent back (stage 0).
  bool known = true;
  std::optional<SlotWork> own;
  int64_t max_new = 0;
  struct TokenIn {
    int32_t token = -1;
    bool last = false;
  };
  std::optional<TokenIn> token_in;
  std::vector<float> x;  // the residual stream [rows, hidden]
  std::map<CollectiveKey, CollectiveState> collectives;
  // How many collective instructions of each (layer, tag, kind) this step has run: which
  // collective of the layer the next one belongs to.
  std::map<std::tuple<int64_t, Tag, InstrKind>, int> seen;
  // Head.
  std::vector<float> logits_slice;
  std::map<int, std::vector<float>> slices;  // rank -> logits slice (gather on rank 0)
  std::optional<SlotResult> result;
  bool result_last = false;  // Run: the result is its request's last token
};

}  // namespace internal

using namespace internal;  // NOLINT: this header is worker's own insides

struct ChipRunner::Impl {
  ChipSetup setup;
  std::vector<std::unique_ptr<transport::Endpoint>> endpoints;
  std::map<topology::LinkId, transport::Endpoint*> by_link;
  std::map<topology::ChipId, int> rank_of;  // group chip -> rank
  std::optional<model::StageShard> shard;
  int32_t slots = 0;
  int tp = 1;
  int64_t hidden = 0;
  bool closed = false;
  // The stage's all-reduces run as a ring (a TP group that is not fully connected): ring.h.
  bool ring = false;
  // Ranks per node when the stage's all-reduces are hierarchical (whole nodes of consecutive
  // ranks: reduce-scatter in the node, node sums across, all-gather in the node), else 0. Rank r
  // then finishes and all-gathers segment r mod hier of hier, as every rank of its place does.
  int hier = 0;
  // Run: the step kinds this chip knows (EncodeStepKind), by step; every message of step s it
  // sends carries the kind of step s + lookahead when known (RunStep: none).
  std::map<int64_t, uint64_t> kinds;
  // Run in virtual time: the virtual arrival the next Send or Forward stamps (-1: its planned
  // start, as RunStep stamps).
  int64_t send_time = -1;
  uint64_t KindAhead(int64_t step) const {
    auto it = kinds.find(step + setup.lookahead);
    return it == kinds.end() ? 0 : it->second;
  }

  int32_t own_rank() const { return setup.stage >= 0 ? setup.rank : -1; }
  int prev_rank() const { return (setup.rank + tp - 1) % tp; }

  std::pair<int64_t, int64_t> Segment(int j) const {
    return {hidden * j / tp, hidden * (j + 1) / tp};
  }
  // Direct and hierarchical exchanges: which segment `rank` finishes (its key in
  // CollectiveState::segments), the key's outputs, and how many segments there are.
  int SegKey(int rank) const { return hier > 0 ? rank % hier : rank; }
  int SegCount() const { return hier > 0 ? hier : tp; }
  std::pair<int64_t, int64_t> SegmentOfKey(int key) const {
    return {hidden * key / SegCount(), hidden * (key + 1) / SegCount()};
  }

  [[noreturn]] void Fail(const Instruction& in, size_t index, int64_t step,
                         const std::string& what) const {
    throw Error(ErrorCode::kInternal, "chip " + std::to_string(setup.program.chip) + " step " +
                                          std::to_string(step) + " instruction " +
                                          std::to_string(index) + " (" +
                                          schedule::DescribeStep(in) + "): " + what);
  }

  transport::Endpoint& Link(topology::LinkId link) {
    return *by_link.at(link);  // checked at construction
  }

  // What the flight recorder keeps of instruction `index`: for a transfer, the link it waits
  // on first (Send: outgoing; Recv, Forward: incoming) with this chip's port on it.
  // Runs `body` for instruction `index` of step `step`, turning any failure into an Error that
  // names the chip, the step and the instruction.
  template <typename Fn>
  void Guarded(const Instruction& in, size_t index, int64_t step, Fn&& body) {
    const int chip = setup.program.chip;
    auto where = [&] {
      return "chip " + std::to_string(chip) + " step " + std::to_string(step) + " instruction " +
             std::to_string(index) + " (" + schedule::DescribeStep(in) + "): ";
    };
    try {
      body();
    } catch (const Error& e) {
      if (std::string_view(e.what()).starts_with("chip ")) throw;
      throw Error(e.code(), where() + e.what());
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kInternal, where() + e.what());
    }
  }

  FlightEntry Entry(const Instruction& in, size_t index) const {
    FlightEntry e;
    e.op = static_cast<int32_t>(index);
    e.kind = in.kind;
    const bool out = in.kind == InstrKind::kSend;
    const bool transfer = out || in.kind == InstrKind::kRecv || in.kind == InstrKind::kForward;
    if (transfer) {
      e.link = out ? in.link : in.in_link;
      e.peer = out ? in.peer : in.in_peer;
      e.bytes = in.bytes;
      auto it = by_link.find(e.link);
      if (it != by_link.end()) e.port = static_cast<int32_t>(it->second->local().port);
    }
    return e;
  }

  // `src_rank`: the rank the message names as its maker (a forwarded message keeps its own).
  void Send(const Instruction& in, int64_t step, Dtype dtype, std::vector<int64_t> shape,
            transport::Payload payload, int32_t src_rank) {
    transport::Message m;
    m.header.schedule_id = setup.schedule_id;
    m.header.step = step;
    m.header.tensor_id = static_cast<uint64_t>(in.msg);
    m.header.token_index = in.sequence;
    m.header.dtype = dtype;
    m.header.shape = std::move(shape);
    m.header.send_time_ns = send_time >= 0 ? send_time : in.start_ns;
    m.header.src_rank = src_rank;
    m.header.ahead = KindAhead(step);
    m.payload = std::move(payload);
    Put(in, std::move(m));
  }

  // Puts `m` on the instruction's outgoing link; its payload counts in the step's link bytes.
  void Put(const Instruction& in, transport::Message m) {
    if (setup.recorder != nullptr) {
      setup.recorder->Sent(in.link, in.peer, static_cast<int64_t>(m.payload.size()));
    }
    Link(in.link).Send(std::move(m), setup.timeout);
  }

  void SendFloats(const Instruction& in, int64_t step, std::vector<int64_t> shape,
                  std::vector<float> v) {
    Send(in, step, Dtype::kFp32, std::move(shape), ToPayload(std::move(v)), own_rank());
  }

  // Arrival order per incoming link (from setup.incoming), where the step's reading is, and
  // messages that arrived before their instruction.
  std::map<topology::LinkId, std::vector<int64_t>> arrival_order;
  std::map<topology::LinkId, size_t> next_arrival;
  std::map<std::pair<topology::LinkId, int64_t>, transport::Message> early;

  transport::Message ReceiveNow(topology::LinkId link, int64_t msg, int64_t step) {
    return Link(link).Receive({setup.schedule_id, step, static_cast<uint64_t>(msg), -1},
                              setup.timeout);
  }

  transport::Message Receive(const Instruction& in, int64_t step) {
    auto held = early.find({in.in_link, in.in_msg});
    if (held != early.end()) {
      transport::Message m = std::move(held->second);
      early.erase(held);
      return m;
    }
    auto order = arrival_order.find(in.in_link);
    if (order == arrival_order.end()) return ReceiveNow(in.in_link, in.in_msg, step);
    size_t& next = next_arrival[in.in_link];
    while (next < order->second.size()) {
      const int64_t msg = order->second[next++];
      transport::Message m = ReceiveNow(in.in_link, msg, step);
      if (msg == in.in_msg) return m;
      early.emplace(std::make_pair(in.in_link, msg), std::move(m));
    }
    throw Error(ErrorCode::kInternal, "message " + std::to_string(in.in_msg) +
                                          " is not in the reservation table of link " +
                                          std::to_string(in.in_link));
  }

  int RankOf(topology::ChipId chip, const Instruction& in, size_t index, int64_t step) const {
    auto it = rank_of.find(chip);
    if (it == rank_of.end())
      Fail(in, index, step, "chip " + std::to_string(chip) + " is not in my TP group");
    return it->second;
  }

  static Collective KindOf(const CollectiveKey& key) {
    return key.first < 0 ? Collective::kEmbedding
                         : (key.second == 0 ? Collective::kAttention : Collective::kMlp);
  }

  int64_t TotalChunks(Collective c) const {
    const partition::ModelSpec& s = setup.spec;
    return model::ReductionChunks(c == Collective::kMlp ? s.intermediate_size : s.q_width());
  }

  // Whether an o / down all-reduce combines row-parallel partials (else: the reduce-scatter
  // all-gathers the column-parallel product's input and each rank computes its own segment).
  bool RowParallel(Collective c) const {
    return c == Collective::kEmbedding ||
           model::RowParallelProjection(setup.spec, tp, c == Collective::kMlp);
  }

  // Which collective (and ring step) a reduce-scatter / all-gather / all-reduce instruction
  // belongs to, counted per (layer, tag, kind): per collective a direct or one-shot all-reduce
  // has tp - 1 sends, tp - 1 receives and one Reduce per phase; a ring tp - 1 of each, one per
  // step, in step order (each step's send follows the previous step's Reduce).
  CollectiveStep StepOf(const Instruction& in, SlotState& st) const {
    const int n = st.seen[{in.layer, in.tag, in.kind}]++;
    int per = tp - 1;
    if (in.kind == InstrKind::kReduce && !ring) {
      per = 1;
    } else if (hier > 0) {  // hier - 1 peers in the node; one per other node across
      per = in.tag == Tag::kAllReduce ? tp / hier - 1 : hier - 1;
    }
    return {{in.layer, n / per}, ring ? n % per : 0};
  }

  // The rank a collective or gather message names as its sender (transport::MessageHeader::
  // src_rank: it survives forwarding, where the link it came in on names only the last hop).
  int SenderRank(const transport::Message& m, const Instruction& in, size_t index,
                 int64_t step) const {
    const int32_t r = m.header.src_rank;
    if (r < 0 || r >= tp || r == setup.rank) {
      Fail(in, index, step,
           "the message names sender rank " + std::to_string(r) + "; expected another rank of " +
               "this chip's TP group (0.." + std::to_string(tp - 1) + ", not " +
               std::to_string(setup.rank) + ")");
    }
    return r;
  }

  // What a one-shot all-reduce sends and combines of this rank: a row-parallel partial as its
  // tree-node sums (a few values per output instead of every chunk; made once per collective),
  // the embedding's rows as they are.
  model::Partial& OneShotPartial(const CollectiveKey& key, CollectiveState& c) const {
    const Collective kind = KindOf(key);
    if (kind == Collective::kEmbedding) return *c.mine;
    if (!c.mine_nodes) c.mine_nodes = c.mine->TreeNodeSums(TotalChunks(kind));
    return *c.mine_nodes;
  }

  // Combines outputs [b, e) from every rank's partial (by_rank[r] from rank r).
  std::vector<float> Combine(const SlotState& st, const CollectiveKey& key,
                             std::span<const model::Partial> by_rank, int64_t b, int64_t e) const {
    std::vector<float> out(static_cast<size_t>(st.rows * (e - b)));
    const Collective kind = KindOf(key);
    if (kind == Collective::kEmbedding) {
      model::CombineEmbedding(by_rank, st.work->tokens, setup.spec.vocab_size, b, e, out.data());
    } else if (!RowParallel(kind)) {
      out = shard->ColumnOutputs(key.first, kind == Collective::kMlp, by_rank);
    } else {
      model::CombineRowParallel(by_rank, TotalChunks(kind), b, e,
                                shard->RowParallelBias(key.first, kind == Collective::kMlp),
                                out.data());
    }
    return out;
  }

  void Compute(const Instruction& in, size_t index, int64_t step, SlotState& st) {
    if (st.work == nullptr) return;
    const int64_t h = hidden;
    switch (in.op) {
      case OpKind::kEmbedding: {
        model::Partial p = shard->Embed(st.work->tokens);
        if (tp == 1) {
          st.x = std::move(p.values);
        } else {
          Begin(st, {-1, 0}, std::move(p));
        }
        return;
      }
      case OpKind::kOutputProjection:
      case OpKind::kMlp: {
        const bool mlp = in.op == OpKind::kMlp;
        const model::RowGroup g{st.work->slot, st.work->position, st.rows};
        model::Partial p = mlp ? shard->MlpPartials(in.layer, st.x.data(), st.rows)
                               : shard->AttentionPartials(in.layer, st.x.data(), {&g, 1});
        Begin(st, {in.layer, mlp ? 1 : 0}, std::move(p));
        return;
      }
      case OpKind::kAttentionResidual:
      case OpKind::kMlpResidual: {
        const bool mlp = in.op == OpKind::kMlpResidual;
        auto it = st.collectives.find({in.layer, mlp ? 1 : 0});
        if (it == st.collectives.end() || !it->second.mine) {
          Fail(in, index, step, "residual without its projection");
        }
        CollectiveState& c = it->second;
        if (tp == 1) {
          c.result.assign(st.x.size(), 0.0f);
          const model::Partial& p = *c.mine;
          model::CombineRowParallel({&p, 1},
                                    TotalChunks(mlp ? Collective::kMlp : Collective::kAttention), 0,
                                    h, shard->RowParallelBias(in.layer, mlp), c.result.data());
        } else if (c.result.size() != st.x.size()) {
          Fail(in, index, step, "residual before the all-reduce finished");
        }
        for (size_t i = 0; i < st.x.size(); ++i) st.x[i] = st.x[i] + c.result[i];
        return;
      }
      case OpKind::kLmHead:
        st.logits_slice = shard->HeadLogits(st.x.data() + (st.rows - 1) * h, 1);
        return;
      case OpKind::kSampling:
        if (tp == 1) Sample(st, std::move(st.logits_slice));
        return;
      default:
        return;  // norms, q/k/v, RoPE, attention: folded into the phase calls above
    }
  }

  void Begin(SlotState& st, const CollectiveKey& key, model::Partial p) {
    st.collectives[key].mine = std::move(p);
  }

  void Sample(SlotState& st, std::vector<float> logits) {
    const SlotWork& w = *st.work;
    SlotResult r;
    r.slot = w.slot;
    r.request = w.request;
    r.token = model::SampleToken(logits, w.sampling, w.sample_index);
    if (w.logits) r.logits = std::move(logits);
    st.result = std::move(r);
    st.result_last = st.max_new > 0 && w.sample_index + 1 >= st.max_new;
  }

  void Reduce(const Instruction& in, size_t index, int64_t step, SlotState& st) {
    if (st.work == nullptr) return;
    if (in.tag == Tag::kGather) {
      std::vector<float> all;
      for (int r = 0; r < tp; ++r) {
        const std::vector<float>& s = r == 0 ? st.logits_slice : st.slices[r];
        all.insert(all.end(), s.begin(), s.end());
      }
      if (static_cast<int64_t>(all.size()) != setup.spec.vocab_size) {
        Fail(in, index, step,
             "gathered " + std::to_string(all.size()) + " logits, not the vocabulary");
      }
      Sample(st, std::move(all));
      return;
    }
    const CollectiveStep at = StepOf(in, st);
    const CollectiveKey& key = at.key;
    CollectiveState& c = st.collectives[key];
    if (in.tag == Tag::kAllReduce && hier > 0) {
      CombineAcross(in, index, step, st, c, key);
      return;
    }
    if (in.tag == Tag::kAllReduce) {
      if (!c.mine || static_cast<int>(c.parts.size()) != tp - 1 || c.parts.count(setup.rank) != 0) {
        Fail(in, index, step,
             "one-shot all-reduce with partials of " +
                 std::to_string(c.parts.size() + (c.mine ? 1 : 0)) + " of " + std::to_string(tp) +
                 " ranks");
      }
      // This rank's partial is lent to the combine: a send of it may still follow (its links
      // were busy), so it goes back afterwards.
      model::Partial& own = OneShotPartial(key, c);
      std::vector<model::Partial> by_rank;
      by_rank.reserve(static_cast<size_t>(tp));
      for (int r = 0; r < tp; ++r) {
        by_rank.push_back(r == setup.rank ? std::move(own) : std::move(c.parts[r]));
      }
      c.result = Combine(st, key, by_rank, 0, hidden);
      own = std::move(by_rank[static_cast<size_t>(setup.rank)]);
      c.parts.clear();
      if (KindOf(key) == Collective::kEmbedding) st.x = c.result;
      return;
    }
    if (ring) {
      RingReduce(in, index, step, st, c, at);
      return;
    }
    if (in.tag == Tag::kReduceScatter) {
      if (c.mine) {  // this rank's own slice (a column-parallel input: all of it)
        const auto [b, e] = SegmentOfKey(SegKey(setup.rank));
        c.parts[setup.rank] =
            c.mine->kind == model::PartialKind::kColumnInput ? *c.mine : c.mine->Slice(b, e - b);
      }
      if (hier > 0) {
        SumNode(in, index, step, st, c, key);
        return;
      }
      FinishScatter(in, index, step, st, c, key);
      return;
    }
    Assemble(in, index, step, st, c, key);
  }

  // Hierarchical, the end of the reduce-scatter inside the node: this node's sum of segment
  // SegKey(rank) from its ranks' partials in c.parts (row-parallel: the tree-node sums over the
  // node's chunks, as a ring message carries them; embedding: the rows the node's ranks own).
  void SumNode(const Instruction& in, size_t index, int64_t step, const SlotState& st,
               CollectiveState& c, const CollectiveKey& key) {
    if (!c.mine || static_cast<int>(c.parts.size()) != hier) {
      Fail(in, index, step,
           "reduce-scatter in the node with partials of " + std::to_string(c.parts.size()) +
               " of " + std::to_string(hier) + " ranks");
    }
    const Collective kind = KindOf(key);
    const auto [b, e] = SegmentOfKey(SegKey(setup.rank));
    if (kind == Collective::kEmbedding) {
      std::vector<float> rows(static_cast<size_t>(st.rows * (e - b)), 0.0f);
      for (const auto& [r, p] : c.parts) {
        ring::PickOwnRows(p, st.work->tokens, setup.spec.vocab_size, tp, r, b, e, rows);
      }
      c.node_rows = std::move(rows);
    } else if (!RowParallel(kind)) {
      Fail(in, index, step, "a hierarchical all-reduce of a column-parallel projection");
    } else {
      const int64_t total = TotalChunks(kind);
      std::optional<ring::NodeSums> sum;
      for (const auto& [r, p] : c.parts) {
        ring::NodeSums mine = ring::FromPartial(p, total, b, e);
        sum = sum ? ring::Merge(*sum, mine, total) : std::move(mine);
      }
      c.node_sums = std::move(sum);
    }
    c.parts.clear();
  }

  // Hierarchical, the end of the exchange across nodes: segment SegKey(rank) from this node's
  // sum and every other node's (bit for bit the canonical combine: ring.h).
  void CombineAcross(const Instruction& in, size_t index, int64_t step, SlotState& st,
                     CollectiveState& c, const CollectiveKey& key) {
    const Collective kind = KindOf(key);
    const auto [b, e] = SegmentOfKey(SegKey(setup.rank));
    const size_t others = static_cast<size_t>(tp / hier - 1);
    if (kind == Collective::kEmbedding) {
      if (!c.node_rows || c.across_rows.size() != others) {
        Fail(in, index, step,
             "embedding rows across nodes from " + std::to_string(c.across_rows.size()) + " of " +
                 std::to_string(others) + " other nodes");
      }
      std::vector<float> rows = *c.node_rows;
      const int64_t vocab = setup.spec.vocab_size;
      for (const auto& [first, theirs] : c.across_rows) {
        const int64_t lo = vocab * first / tp, hi = vocab * (first + hier) / tp;
        for (size_t i = 0; i < st.work->tokens.size(); ++i) {
          if (st.work->tokens[i] < lo || st.work->tokens[i] >= hi) continue;
          std::copy_n(theirs.begin() + static_cast<int64_t>(i) * (e - b), e - b,
                      rows.begin() + static_cast<int64_t>(i) * (e - b));
        }
      }
      c.segments[SegKey(setup.rank)] = std::move(rows);
      return;
    }
    if (!c.node_sums || c.across_sums.size() != others) {
      Fail(in, index, step,
           "node sums across nodes from " + std::to_string(c.across_sums.size()) + " of " +
               std::to_string(others) + " other nodes");
    }
    const int64_t total = TotalChunks(kind);
    ring::NodeSums sum = *c.node_sums;
    for (const auto& [first, theirs] : c.across_sums) sum = ring::Merge(sum, theirs, total);
    c.segments[SegKey(setup.rank)] =
        ring::Finish(sum, total, shard->RowParallelBias(key.first, kind == Collective::kMlp), b);
  }

  // The end of a reduce-scatter: segment `rank` from every rank's partial of it in c.parts (a
  // column-parallel input: every rank's slice, and this rank computes its outputs).
  void FinishScatter(const Instruction& in, size_t index, int64_t step, const SlotState& st,
                     CollectiveState& c, const CollectiveKey& key) {
    if (!c.mine || static_cast<int>(c.parts.size()) != tp) {
      Fail(in, index, step,
           "reduce-scatter with partials of " + std::to_string(c.parts.size()) + " of " +
               std::to_string(tp) + " ranks");
    }
    // A ring's Sends of this collective may still follow (its outgoing link was busy while the
    // steps coming in went on), and they pass these slices on: they stay until the step ends.
    std::vector<model::Partial> by_rank;
    by_rank.reserve(c.parts.size());
    for (auto& [rank, p] : c.parts) by_rank.push_back(ring ? p : std::move(p));
    const auto [b, e] = Segment(setup.rank);
    c.segments[setup.rank] = Combine(st, key, by_rank, b, e);
    if (!ring) c.parts.clear();
  }

  // The end of an all-gather: every segment in place.
  void Assemble(const Instruction& in, size_t index, int64_t step, SlotState& st,
                CollectiveState& c, const CollectiveKey& key) {
    if (static_cast<int>(c.segments.size()) != SegCount()) {
      Fail(in, index, step,
           "all-gather with " + std::to_string(c.segments.size()) + " of " +
               std::to_string(SegCount()) + " segments");
    }
    c.result.assign(static_cast<size_t>(st.rows * hidden), 0.0f);
    for (const auto& [j, seg] : c.segments) {
      const auto [b, e] = SegmentOfKey(j);
      for (int64_t r = 0; r < st.rows; ++r) {
        std::copy_n(seg.begin() + r * (e - b), e - b, c.result.begin() + r * hidden + b);
      }
    }
    if (KindOf(key) == Collective::kEmbedding) st.x = c.result;
  }

  // A ring step's Reduce (ring.h). Reduce-scatter step s: this rank adds its share to the segment
  // that came from rank - 1 (ScatterSegment(rank - 1, s)); the last step finishes segment
  // `rank`. A column-parallel product's ring carries input slices instead: after the last step
  // every slice is here and this rank computes its outputs. All-gather: the last step assembles.
  void RingReduce(const Instruction& in, size_t index, int64_t step, SlotState& st,
                  CollectiveState& c, const CollectiveStep& at) {
    const int s = at.step;
    const bool last = s == tp - 2;
    if (in.tag == Tag::kAllGather) {
      const int seg = ring::GatherSegment(prev_rank(), s, tp);
      if (c.segments.count(seg) == 0) {
        Fail(in, index, step,
             "ring all-gather step " + std::to_string(s) + " before segment " +
                 std::to_string(seg) + " arrived");
      }
      if (last) Assemble(in, index, step, st, c, at.key);
      return;
    }
    if (!c.mine) Fail(in, index, step, "ring reduce-scatter before the partials");
    const Collective kind = KindOf(at.key);
    if (!RowParallel(kind)) {
      if (!last) return;
      c.parts[setup.rank] = *c.mine;
      FinishScatter(in, index, step, st, c, at.key);
      return;
    }
    const auto [b, e] = Segment(ring::ScatterSegment(prev_rank(), s, tp));
    if (kind == Collective::kEmbedding) {
      auto it = c.arrived_rows.find(s);
      if (it == c.arrived_rows.end()) {
        Fail(in, index, step,
             "ring reduce-scatter step " + std::to_string(s) + " before its message");
      }
      std::vector<float> rows = std::move(it->second);
      c.arrived_rows.erase(it);
      ring::PickOwnRows(*c.mine, st.work->tokens, setup.spec.vocab_size, tp, setup.rank, b, e,
                        rows);
      if (last) {
        c.segments[setup.rank] = std::move(rows);
      } else {
        c.outgoing_rows[s + 1] = std::move(rows);
      }
      return;
    }
    auto it = c.arrived_sums.find(s);
    if (it == c.arrived_sums.end()) {
      Fail(in, index, step,
           "ring reduce-scatter step " + std::to_string(s) + " before its message");
    }
    const int64_t total = TotalChunks(kind);
    ring::NodeSums merged = ring::Merge(it->second, ring::FromPartial(*c.mine, total, b, e), total);
    c.arrived_sums.erase(it);
    if (last) {
      c.segments[setup.rank] = ring::Finish(
          merged, total, shard->RowParallelBias(at.key.first, kind == Collective::kMlp), b);
    } else {
      c.outgoing_sums[s + 1] = std::move(merged);
    }
  }

  void SendOut(const Instruction& in, size_t index, int64_t step, SlotState& st) {
    const int64_t rows = st.work == nullptr ? 0 : st.rows;
    switch (in.tag) {
      case Tag::kActivation:
        if (st.work != nullptr && static_cast<int64_t>(st.x.size()) != rows * hidden) {
          Fail(in, index, step, "activation not computed");
        }
        SendFloats(in, step, {rows, hidden}, st.work == nullptr ? std::vector<float>{} : st.x);
        return;
      case Tag::kToken: {
        // Two int32 (native byte order): the token (-1: idle) and 1 when it is its request's
        // last (Run: stage 0 frees the slot).
        const int32_t word[2] = {st.result ? st.result->token : -1,
                                 st.result && st.result_last ? 1 : 0};
        transport::Payload p(sizeof(word));
        std::memcpy(p.data(), word, sizeof(word));
        Send(in, step, Dtype::kInt8, {8}, std::move(p), own_rank());
        return;
      }
      case Tag::kGather:
        SendFloats(in, step, {rows == 0 ? 0 : 1, shard->weights().vocab_count},
                   st.work == nullptr ? std::vector<float>{} : st.logits_slice);
        return;
      case Tag::kReduceScatter:
      case Tag::kAllGather:
      case Tag::kAllReduce: {
        if (st.work == nullptr) {
          SendFloats(in, step, {0, 0, 0}, {});
          return;
        }
        const CollectiveStep at = StepOf(in, st);
        const CollectiveKey& key = at.key;
        CollectiveState& c = st.collectives[key];
        if (ring) {
          RingSend(in, index, step, st, c, at);
          return;
        }
        if (in.tag == Tag::kAllReduce && hier > 0) {  // this node's sum of my segment, across
          const auto [b, e] = SegmentOfKey(SegKey(setup.rank));
          if (KindOf(key) == Collective::kEmbedding) {
            if (!c.node_rows) Fail(in, index, step, "rows across before the node's reduce");
            SendFloats(in, step, {rows, e - b, 1}, *c.node_rows);
          } else {
            if (!c.node_sums) Fail(in, index, step, "node sums across before the node's reduce");
            const auto nodes = static_cast<int64_t>(c.node_sums->nodes.size());
            SendFloats(in, step, {rows, e - b, nodes}, c.node_sums->values);
          }
          return;
        }
        if (in.tag == Tag::kAllReduce) {
          if (!c.mine) Fail(in, index, step, "all-reduce send before the partials");
          if (c.mine->kind == model::PartialKind::kColumnInput) {
            Fail(in, index, step,
                 "a one-shot all-reduce of a column-parallel projection (each rank holds only "
                 "its outputs' weights: it needs reduce-scatter + all-gather)");
          }
          const model::Partial& p = OneShotPartial(key, c);
          const int64_t per_output = static_cast<int64_t>(p.values.size()) / (rows * p.out_count);
          SendFloats(in, step, {rows, p.out_count, per_output}, p.values);
          return;
        }
        if (in.tag == Tag::kReduceScatter) {
          if (!c.mine) Fail(in, index, step, "reduce-scatter send before the partials");
          if (c.mine->kind == model::PartialKind::kColumnInput) {  // every peer needs all of it
            SendFloats(in, step, {rows, c.mine->out_count, 1}, c.mine->values);
            return;
          }
          // A direct exchange's hop goes straight to the peer rank (a fully connected group, or
          // the node of a hierarchical one).
          const auto [b, e] = SegmentOfKey(SegKey(RankOf(in.peer, in, index, step)));
          model::Partial p = c.mine->Slice(b, e - b);
          SendFloats(in, step, {rows, e - b, p.chunks}, std::move(p.values));
        } else {
          auto seg = c.segments.find(SegKey(setup.rank));
          if (seg == c.segments.end()) {
            Fail(in, index, step, "all-gather send before the reduce-scatter");
          }
          const auto [b, e] = SegmentOfKey(SegKey(setup.rank));
          SendFloats(in, step, {rows, e - b, 1}, seg->second);
        }
        return;
      }
      default:
        Fail(in, index, step, "a send of an op");
    }
  }

  // `m`: the message the instruction receives.
  void ReceiveIn(const Instruction& in, size_t index, int64_t step, SlotState& st,
                 transport::Message m) {
    const std::vector<int64_t>& shape = m.header.shape;
    if (st.work == nullptr) return;  // an idle slot's empty tensor
    switch (in.tag) {
      case Tag::kActivation:
        if (shape.size() != 2 || shape[0] != st.rows || shape[1] != hidden) {
          Fail(in, index, step, "activation of the wrong shape");
        }
        st.x = ToFloats(m.payload);
        return;
      case Tag::kToken: {
        int32_t word[2];
        if (m.payload.size() != sizeof(word))
          Fail(in, index, step, "a token message of the wrong size");
        std::memcpy(word, m.payload.bytes().data(), sizeof(word));
        st.token_in = SlotState::TokenIn{word[0], word[1] != 0};
        return;  // RunStep: the next step's tokens come with the Step
      }
      case Tag::kGather: {
        const int from = SenderRank(m, in, index, step);
        if (!st.slices.emplace(from, ToFloats(m.payload)).second) {
          Fail(in, index, step, "a second logits slice from rank " + std::to_string(from));
        }
        return;
      }
      case Tag::kReduceScatter:
      case Tag::kAllGather:
      case Tag::kAllReduce: {
        const int from = SenderRank(m, in, index, step);
        // A peer's message may arrive before this rank has computed its own partial (its compute
        // unit was busy with another slot): keep it until the Reduce.
        if (shape.size() != 3 || shape[0] != st.rows) {
          Fail(in, index, step, "collective message of the wrong shape");
        }
        const CollectiveStep at = StepOf(in, st);
        const CollectiveKey& key = at.key;
        CollectiveState& c = st.collectives[key];
        if (ring) {
          RingReceive(in, index, step, st, c, at, from, ToFloats(m.payload), shape);
          return;
        }
        if (in.tag == Tag::kAllReduce && hier > 0) {
          ReceiveAcross(in, index, step, st, c, at, from, ToFloats(m.payload), shape);
          return;
        }
        if ((in.tag == Tag::kAllGather ? c.segments.count(SegKey(from)) : c.parts.count(from)) !=
            0) {
          Fail(in, index, step,
               "a second " + std::string(schedule::TagName(in.tag)) + " message from rank " +
                   std::to_string(from));
        }
        if (in.tag == Tag::kAllGather) {
          c.segments[SegKey(from)] = ToFloats(m.payload);
          return;
        }
        const Collective kind = KindOf(key);
        const bool row_parallel = RowParallel(kind);
        const auto [b, e] = in.tag == Tag::kAllReduce ? std::pair<int64_t, int64_t>{0, hidden}
                                                      : SegmentOfKey(SegKey(setup.rank));
        model::Partial p;
        p.kind = model::PartialKind::kRowParallel;  // the Reduce picks the combine by its key
        p.rows = st.rows;
        p.out_begin = b;
        p.out_count = e - b;
        if (in.tag == Tag::kAllReduce && !row_parallel) {
          Fail(in, index, step, "a one-shot all-reduce of a column-parallel projection");
        }
        // Values per output the message must carry: an embedding row's 1; a row-parallel
        // partial's chunks (every rank holds total / tp of them), or under one-shot the
        // tree-node sums of those chunks.
        int64_t per_output = 1;
        if (kind != Collective::kEmbedding && row_parallel) {
          const int64_t total = TotalChunks(kind);
          p.chunks = total / tp;
          p.first_chunk = from * p.chunks;
          p.tree_nodes = in.tag == Tag::kAllReduce;
          per_output =
              p.tree_nodes
                  ? static_cast<int64_t>(
                        model::TreeNodes(total, p.first_chunk, p.first_chunk + p.chunks).size())
                  : p.chunks;
        }
        if (!row_parallel) p = ColumnSlice(kind, from, st.rows);
        p.values = ToFloats(m.payload);
        if (shape[1] != p.out_count || shape[2] != per_output ||
            Elements(shape) != static_cast<int64_t>(p.values.size())) {
          Fail(in, index, step, "partial of the wrong shape");
        }
        c.parts[from] = std::move(p);
        return;
      }
      default:
        Fail(in, index, step, "a receive of an op");
    }
  }

  // Rank `owner`'s slice of a column-parallel product's input (tp divides the width), values
  // still to fill.
  model::Partial ColumnSlice(Collective kind, int owner, int64_t rows) const {
    const int64_t width =
        kind == Collective::kMlp ? setup.spec.intermediate_size : setup.spec.q_width();
    model::Partial p;
    p.kind = model::PartialKind::kColumnInput;
    p.rows = rows;
    p.out_begin = width / tp * owner;
    p.out_count = width / tp;
    p.chunks = 1;
    p.first_chunk = 0;
    return p;
  }

  // A ring step's Send to rank + 1 (ring.h): reduce-scatter step s carries segment
  // ScatterSegment(rank, s) with the shares of the ranks before (this rank's own at step 0), a
  // column-parallel ring the input slice of rank - s; all-gather step s segment
  // GatherSegment(rank, s).
  void RingSend(const Instruction& in, size_t index, int64_t step, SlotState& st,
                CollectiveState& c, const CollectiveStep& at) {
    const int s = at.step;
    const int64_t rows = st.rows;
    if (in.tag == Tag::kAllGather) {
      const int seg = ring::GatherSegment(setup.rank, s, tp);
      auto it = c.segments.find(seg);
      if (it == c.segments.end()) {
        Fail(in, index, step,
             "ring all-gather send before segment " + std::to_string(seg) + " is here");
      }
      const auto [b, e] = Segment(seg);
      SendFloats(in, step, {rows, e - b, 1}, it->second);
      return;
    }
    if (!c.mine) Fail(in, index, step, "ring reduce-scatter send before the partials");
    const Collective kind = KindOf(at.key);
    if (!RowParallel(kind)) {
      const int owner = (setup.rank - s + tp) % tp;
      auto it = c.parts.find(owner);
      if (owner != setup.rank && it == c.parts.end()) {
        Fail(in, index, step,
             "ring send before rank " + std::to_string(owner) + "'s slice is here");
      }
      const model::Partial& p = owner == setup.rank ? *c.mine : it->second;
      SendFloats(in, step, {rows, p.out_count, 1}, p.values);
      return;
    }
    const auto [b, e] = Segment(ring::ScatterSegment(setup.rank, s, tp));
    if (kind == Collective::kEmbedding) {
      std::vector<float> out;
      if (s == 0) {
        out.assign(static_cast<size_t>(rows * (e - b)), 0.0f);
        ring::PickOwnRows(*c.mine, st.work->tokens, setup.spec.vocab_size, tp, setup.rank, b, e,
                          out);
      } else {
        auto it = c.outgoing_rows.find(s);
        if (it == c.outgoing_rows.end()) Fail(in, index, step, "ring send before its Reduce");
        out = std::move(it->second);
        c.outgoing_rows.erase(it);
      }
      SendFloats(in, step, {rows, e - b, 1}, std::move(out));
      return;
    }
    ring::NodeSums out;
    if (s == 0) {
      out = ring::FromPartial(*c.mine, TotalChunks(kind), b, e);
    } else {
      auto it = c.outgoing_sums.find(s);
      if (it == c.outgoing_sums.end()) Fail(in, index, step, "ring send before its Reduce");
      out = std::move(it->second);
      c.outgoing_sums.erase(it);
    }
    const auto nodes = static_cast<int64_t>(out.nodes.size());
    SendFloats(in, step, {rows, e - b, nodes}, std::move(out.values));
  }

  // Hierarchical: another node's sum of this rank's segment, from the rank of its place there
  // (its node: ranks first .. first + hier - 1), kept for the Reduce.
  void ReceiveAcross(const Instruction& in, size_t index, int64_t step, const SlotState& st,
                     CollectiveState& c, const CollectiveStep& at, int from,
                     std::vector<float> values, const std::vector<int64_t>& shape) {
    const int first = from / hier * hier;
    if (SegKey(from) != SegKey(setup.rank) || first == setup.rank / hier * hier) {
      Fail(in, index, step,
           "a node sum from rank " + std::to_string(from) + ", not of rank " +
               std::to_string(setup.rank) + "'s place in another node");
    }
    if (c.across_sums.count(first) != 0 || c.across_rows.count(first) != 0) {
      Fail(in, index, step, "a second node sum from rank " + std::to_string(from));
    }
    const auto [b, e] = SegmentOfKey(SegKey(setup.rank));
    const Collective kind = KindOf(at.key);
    int64_t per_output = 1;
    ring::NodeSums sums;
    if (kind != Collective::kEmbedding) {
      const int64_t total = TotalChunks(kind);
      std::vector<int> ranks(static_cast<size_t>(hier));
      for (int i = 0; i < hier; ++i) ranks[static_cast<size_t>(i)] = first + i;
      sums.nodes = ring::RankCover(total, total / tp, ranks);
      sums.rows = st.rows;
      sums.count = e - b;
      per_output = static_cast<int64_t>(sums.nodes.size());
    }
    if (shape[1] != e - b || shape[2] != per_output ||
        Elements(shape) != static_cast<int64_t>(values.size())) {
      Fail(in, index, step,
           "node sum of the wrong shape (want " + std::to_string(st.rows) + " x " +
               std::to_string(e - b) + " x " + std::to_string(per_output) + ")");
    }
    if (kind == Collective::kEmbedding) {
      c.across_rows[first] = std::move(values);
      return;
    }
    sums.values = std::move(values);
    c.across_sums[first] = std::move(sums);
  }

  // A ring step's message from rank - 1 (what RingSend sent there), kept for the Reduce.
  void RingReceive(const Instruction& in, size_t index, int64_t step, const SlotState& st,
                   CollectiveState& c, const CollectiveStep& at, int from,
                   std::vector<float> values, const std::vector<int64_t>& shape) {
    const int s = at.step;
    if (from != prev_rank()) {
      Fail(in, index, step,
           "ring step " + std::to_string(s) + " from rank " + std::to_string(from) +
               ", expected rank " + std::to_string(prev_rank()));
    }
    auto expect = [&](int64_t outputs, int64_t per_output) {
      if (shape[1] != outputs || shape[2] != per_output ||
          Elements(shape) != static_cast<int64_t>(values.size())) {
        Fail(in, index, step,
             "ring message of the wrong shape (want " + std::to_string(st.rows) + " x " +
                 std::to_string(outputs) + " x " + std::to_string(per_output) + ")");
      }
    };
    if (in.tag == Tag::kAllGather) {
      const int seg = ring::GatherSegment(from, s, tp);
      const auto [b, e] = Segment(seg);
      expect(e - b, 1);
      c.segments[seg] = std::move(values);
      return;
    }
    if (in.tag != Tag::kReduceScatter) Fail(in, index, step, "a one-shot all-reduce in a ring");
    const Collective kind = KindOf(at.key);
    if (!RowParallel(kind)) {
      const int owner = (from - s + tp) % tp;
      model::Partial p = ColumnSlice(kind, owner, st.rows);
      expect(p.out_count, 1);
      p.values = std::move(values);
      c.parts[owner] = std::move(p);
      return;
    }
    const auto [b, e] = Segment(ring::ScatterSegment(from, s, tp));
    if (kind == Collective::kEmbedding) {
      expect(e - b, 1);
      c.arrived_rows[s] = std::move(values);
      return;
    }
    const int64_t total = TotalChunks(kind);
    const std::vector<int> ranks = ring::ScatterRanks(from, s, tp);
    ring::NodeSums sums;
    sums.nodes = ring::RankCover(total, total / tp, ranks);
    sums.rows = st.rows;
    sums.count = e - b;
    expect(e - b, static_cast<int64_t>(sums.nodes.size()));
    sums.values = std::move(values);
    c.arrived_sums[s] = std::move(sums);
  }

  // Passes `m` (what the Forward receives) on: the same tensor, sender rank and (unless this
  // chip knows the kind it announces itself) announcement.
  void Forward(const Instruction& in, int64_t step, transport::Message m) {
    transport::Message out;
    out.header = m.header;
    out.header.step = step;
    out.header.tensor_id = static_cast<uint64_t>(in.msg);
    out.header.send_time_ns = send_time >= 0 ? send_time : in.start_ns;
    if (const uint64_t ahead = KindAhead(step); ahead != 0) out.header.ahead = ahead;
    out.payload = std::move(m.payload);
    Put(in, std::move(out));
  }
};

}  // namespace lockstep::worker
