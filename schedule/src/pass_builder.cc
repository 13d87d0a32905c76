#include "pass_builder.h"

#include <algorithm>
#include <numeric>

#include "link_model.h"

namespace lockstep::schedule {

PassBuilder::PassBuilder(const topology::Topology& topo, const partition::LinkCostParams& params,
                         RouteCache& routes, int64_t period)
    : topo_(topo),
      params_(params),
      routes_(routes),
      period_(period),
      bodies_(static_cast<size_t>(topo.chip_count())),
      compute_(static_cast<size_t>(topo.chip_count()), ModuloTimeline(period)),
      links_(2 * static_cast<size_t>(topo.link_count()), ModuloTimeline(period)),
      compute_busy_(static_cast<size_t>(topo.chip_count()), 0),
      link_busy_(2 * static_cast<size_t>(topo.link_count()), 0),
      compute_span_(static_cast<size_t>(topo.chip_count()), {INT64_MAX, INT64_MIN}),
      link_span_(2 * static_cast<size_t>(topo.link_count()), {INT64_MAX, INT64_MIN}) {}

int64_t PassBuilder::ReadyAt(ChipId chip, const Deps& deps) const {
  int64_t t = 0;
  const std::vector<Instruction>& body = bodies_[static_cast<size_t>(chip)];
  for (int32_t d : deps) t = std::max(t, body[static_cast<size_t>(d)].end_ns);
  return t;
}

int32_t PassBuilder::Emit(ChipId chip, Instruction in) {
  std::vector<Instruction>& body = bodies_[static_cast<size_t>(chip)];
  body.push_back(std::move(in));
  return static_cast<int32_t>(body.size() - 1);
}

int64_t PassBuilder::Take(ModuloTimeline& table, int64_t& busy, std::pair<int64_t, int64_t>& span,
                          int64_t ready, int64_t duration) {
  busy += duration;
  int64_t t = table.Reserve(ready, duration);
  if (t < 0) {
    unplaced_ = true;  // the result is discarded; keep building with a consistent shape
    t = ready;
  }
  if (duration > 0) {
    span.first = std::min(span.first, t);
    span.second = std::max(span.second, t + duration);
    span_max_ = std::max(span_max_, span.second - span.first);
  }
  return t;
}

int32_t PassBuilder::Compute(ChipId chip, const Deps& deps, int64_t ns, InstrKind kind, Tag tag,
                             partition::OpKind op) {
  Instruction in = step;
  in.kind = kind;
  in.tag = tag;
  in.op = op;
  in.duration_ns = ns;
  const auto c = static_cast<size_t>(chip);
  in.start_ns = Take(compute_[c], compute_busy_[c], compute_span_[c], ReadyAt(chip, deps), ns);
  in.end_ns = in.start_ns + ns;
  in.deps = deps;
  return Emit(chip, std::move(in));
}

Deps PassBuilder::Transfer(ChipId src, const Deps& deps, ChipId dst, int64_t bytes, Tag tag) {
  if (src == dst) return deps;
  return Move(routes_.Route(src, dst), deps, bytes, tag);
}

Deps PassBuilder::TransferVia(ChipId src, const Deps& deps, const RouteHop& crossing, ChipId dst,
                              int64_t bytes, Tag tag) {
  std::vector<RouteHop> hops = routes_.Route(src, crossing.from);
  hops.push_back(crossing);
  const std::vector<RouteHop>& rest = routes_.Route(crossing.to, dst);
  hops.insert(hops.end(), rest.begin(), rest.end());
  return Move(hops, deps, bytes, tag);
}

Deps PassBuilder::Move(const std::vector<RouteHop>& hops, const Deps& deps, int64_t bytes,
                       Tag tag) {
  const ChipId src = hops.front().from;
  int64_t earliest = ReadyAt(src, deps);
  int64_t in_msg = -1;
  for (size_t h = 0; h < hops.size(); ++h) {
    const RouteHop& hop = hops[h];
    const topology::Link& link = topo_.link(hop.link);
    if (h > 0) {
      const Instruction& prev = bodies_[static_cast<size_t>(hops[h - 1].from)].back();
      earliest = link_model::ForwardEarliestNs(prev.start_ns, topo_.link(hops[h - 1].link), link,
                                               bytes, params_);
    }
    const size_t dir = 2 * static_cast<size_t>(hop.link) + (link.a.chip == hop.from ? 0 : 1);
    Instruction in = step;
    in.kind = h == 0 ? InstrKind::kSend : InstrKind::kForward;
    in.tag = tag;
    in.bytes = bytes;
    const int64_t hold = link_model::OccupancyNs(link, bytes, params_);
    in.start_ns = Take(links_[dir], link_busy_[dir], link_span_[dir], earliest, hold);
    in.end_ns = in.start_ns + hold;
    in.link = hop.link;
    in.peer = hop.to;
    in.msg = next_msg_++;
    if (h == 0) {
      in.deps = deps;
    } else {
      in.in_link = hops[h - 1].link;
      in.in_peer = hops[h - 1].from;
      in.in_msg = in_msg;
    }
    in_msg = in.msg;
    Emit(hop.from, std::move(in));
  }
  const Instruction& last = bodies_[static_cast<size_t>(hops.back().from)].back();
  Instruction recv = step;
  recv.kind = InstrKind::kRecv;
  recv.tag = tag;
  recv.bytes = bytes;
  recv.start_ns = recv.end_ns =
      link_model::ArrivalNs(last.start_ns, topo_.link(hops.back().link), bytes, params_);
  recv.in_link = hops.back().link;
  recv.in_peer = hops.back().from;
  recv.in_msg = in_msg;
  return {Emit(hops.back().to, std::move(recv))};
}

PassBuilder::Result PassBuilder::Finish() {
  Result r;
  r.messages = next_msg_;
  r.unplaced = unplaced_;
  r.span_max = span_max_;
  for (int64_t b : compute_busy_) r.busy_max = std::max(r.busy_max, b);
  for (int64_t b : link_busy_) r.busy_max = std::max(r.busy_max, b);
  for (size_t c = 0; c < bodies_.size(); ++c) {
    std::vector<Instruction>& body = bodies_[c];
    if (body.empty()) continue;
    std::vector<int32_t> order(body.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
      return body[static_cast<size_t>(x)].start_ns < body[static_cast<size_t>(y)].start_ns;
    });
    std::vector<int32_t> where(body.size());
    for (size_t i = 0; i < order.size(); ++i) {
      where[static_cast<size_t>(order[i])] = static_cast<int32_t>(i);
    }
    std::vector<Instruction> sorted;
    sorted.reserve(body.size());
    for (int32_t i : order) {
      Instruction in = std::move(body[static_cast<size_t>(i)]);
      for (int32_t& d : in.deps) d = where[static_cast<size_t>(d)];
      std::sort(in.deps.begin(), in.deps.end());
      in.deps.erase(std::unique(in.deps.begin(), in.deps.end()), in.deps.end());
      r.makespan = std::max(r.makespan, in.end_ns);
      sorted.push_back(std::move(in));
    }
    body.clear();
    body.shrink_to_fit();
    r.bodies.emplace_back(static_cast<ChipId>(c), std::move(sorted));
  }
  return r;
}

}  // namespace lockstep::schedule
