// GanttSvg: one simulated decode period, chips x time (svg.h).
#include <algorithm>
#include <array>
#include <cmath>
#include <map>

#include "lockstep/common/error.h"
#include "lockstep/viz/svg.h"
#include "svg_writer.h"

namespace lockstep::viz {
namespace {

using schedule::InstrKind;
using schedule::Instruction;

constexpr double kMargin = 20;
constexpr double kLabels = 190;  // row labels on the left
constexpr double kChart = 1180;  // the time axis
constexpr double kHeader = 78;
constexpr size_t kMaxChipRows = 96;

enum Cat { kCompute, kReduce, kSend, kForward, kRecv, kCats };
constexpr const char* kCatName[kCats] = {"compute", "reduce", "send", "forward", "receive"};
constexpr const char* kCatColor[kCats] = {"#4575b4", "#8e5bb8", "#f28e2b", "#d4b106", "#3a9a3a"};

Cat CatOf(const Instruction& in) {
  switch (in.kind) {
    case InstrKind::kCompute:
      return kCompute;
    case InstrKind::kReduce:
      return kReduce;
    case InstrKind::kSend:
      return kSend;
    case InstrKind::kForward:
      return kForward;
    case InstrKind::kRecv:
      return kRecv;
  }
  return kCompute;
}

// A nice tick step near `span` / 8: 1, 2 or 5 x 10^k ns.
int64_t TickStep(int64_t span) {
  int64_t step = 1;
  while (step * 10 <= span / 8) step *= 10;
  if (step * 5 <= span / 8) return step * 5;
  if (step * 2 <= span / 8) return step * 2;
  return step;
}

std::string Us(int64_t ns) { return Num(static_cast<double>(ns) / 1000.0); }

}  // namespace

std::string GanttSvg(const partition::Plan& plan, const schedule::CompactSchedule& s,
                     const schedule::SimResult& run) {
  if (!run.ok) throw InvalidInput("gantt: the simulation failed: " + run.failure);
  const schedule::InstanceIndex index(s, s.tokens);
  if (run.instance_start_ns.size() != index.size()) {
    throw InvalidInput(
        "gantt: the simulation kept no per-instruction times of this schedule "
        "(simulate it with keep_times and its own token count)");
  }
  const int decode = s.PhaseIndex(schedule::PhaseKind::kDecode);
  if (decode < 0) throw InvalidInput("gantt: the schedule has no decode phase");
  const auto x = static_cast<size_t>(decode);
  const schedule::Phase& ph = s.phases[x];

  // Rows: every chip, or rank 0 of every stage when chips would be too thin to read.
  std::vector<size_t> row_chip;     // index into s.chips
  std::map<size_t, size_t> row_of;  // s.chips index -> row
  const bool per_chip = s.chips.size() <= kMaxChipRows;
  std::map<topology::ChipId, size_t> chip_index;
  for (size_t c = 0; c < s.chips.size(); ++c) chip_index[s.chips[c].chip] = c;
  if (per_chip) {
    for (size_t c = 0; c < s.chips.size(); ++c) {
      if (s.chips[c].bodies[x].empty()) continue;
      row_of[c] = row_chip.size();
      row_chip.push_back(c);
    }
  } else {
    for (const partition::StagePlan& st : plan.stages) {
      auto it = chip_index.find(st.chips.front());
      if (it == chip_index.end()) continue;
      const size_t row = row_chip.size();
      row_chip.push_back(it->second);
      for (topology::ChipId c : st.chips) {
        auto jt = chip_index.find(c);
        if (jt != chip_index.end()) row_of[jt->second] = row;
      }
    }
  }
  const size_t rows = row_chip.size();
  const double row_h = std::clamp(900.0 / std::max<size_t>(1, rows), 3.0, 22.0);
  // Label every row when they are tall enough, else every n-th (about 12 px apart).
  const size_t label_every = static_cast<size_t>(std::ceil(11.5 / row_h));
  const double top = kMargin + kHeader + 22;

  // The period: every slot's token of the first decode pass.
  int64_t t0 = INT64_MAX, t1 = INT64_MIN;
  for (size_t c = 0; c < s.chips.size(); ++c) {
    for (int64_t j = 0; j < ph.slots; ++j) {
      const size_t base = index.Id({x, j, c, 0});
      for (size_t i = 0; i < s.chips[c].bodies[x].size(); ++i) {
        if (run.instance_end_ns[base + i] < 0) continue;
        t0 = std::min(t0, run.instance_start_ns[base + i]);
        t1 = std::max(t1, run.instance_end_ns[base + i]);
      }
    }
  }
  if (t0 >= t1) t0 = 0, t1 = 1;
  const double ns_per_px = static_cast<double>(t1 - t0) / kChart;
  auto X = [&](int64_t t) { return kMargin + kLabels + static_cast<double>(t - t0) / ns_per_px; };

  Svg svg(kMargin * 2 + kLabels + kChart + 10, 0);
  // Header.
  const double bound = run.metrics.token_latency_ns.bound;
  svg.Text(kMargin, kMargin + 16,
           s.model + " on " + s.topology + ": one decode period simulated, " +
               (ph.slots == 1
                    ? std::string("one sequence slot")
                    : std::to_string(ph.slots) + " sequence slots " + Us(ph.slot_ns) + " us apart"),
           15, "font-weight=\"bold\" fill=\"#111\"");
  std::string figures = "sequence 0's token: " + Us(s.token_latency_ns) + " us scheduled";
  if (bound > 0) {
    figures += ", " + Num(static_cast<double>(s.token_latency_ns) / bound * 100.0) +
               "% of its bound " + Num(bound / 1000.0) + " us (compute and reduce steps alone)";
  }
  figures += "; predicted by the plan " + Us(plan.predicted.token_latency_ns) + " us";
  svg.Text(kMargin, kMargin + 36, figures, 11.5, "fill=\"#222\"");
  std::string gap = "critical path (red) beyond compute:";
  int named = 0;
  for (const schedule::GapShare& g : run.gap) {
    if (g.what == "compute" || g.what == "collective reduce steps" || named == 4) continue;
    gap += std::string(named ? "," : "") + " " + g.what + " " + Us(g.ns) + " us";
    ++named;
  }
  if (named == 0) gap += " nothing";
  svg.Text(kMargin, kMargin + 54, gap, 11.5, "class=\"gap\" fill=\"#222\"");
  svg.Text(kMargin, kMargin + 72,
           per_chip ? "one row per chip: compute lane above, link lane below (receives as ticks)"
                    : Thousands(static_cast<int64_t>(s.chips.size())) +
                          " chips are too many for a row each: one row per stage, its rank 0 "
                          "(the other ranks do the same work; forwarding-only chips not drawn); "
                          "compute lane above, link lane below",
           11, "class=\"note\" fill=\"#333\"");

  // Time axis.
  const int64_t step = TickStep(t1 - t0);
  const double axis_y = top - 6;
  for (int64_t t = 0; t <= t1 - t0; t += step) {
    const double px = X(t0 + t);
    svg.Line(px, axis_y, px, top + rows * row_h, "tick", "stroke=\"#e6e6e6\" stroke-width=\"1\"");
    svg.Text(px, axis_y - 3, Us(t) + " us", 9, "text-anchor=\"middle\" fill=\"#555\"");
  }

  // Rows: labels, lanes and merged runs.
  for (size_t r = 0; r < rows; ++r) {
    const size_t c = row_chip[r];
    const schedule::CompactChip& chip = s.chips[c];
    const double y = top + r * row_h;
    if (r % 2 == 0) {
      svg.Rect(kMargin + kLabels, y, kChart, row_h, "row", "#fafafa");
    }
    if (r % label_every == 0) {
      const std::string label =
          per_chip
              ? "chip " + std::to_string(chip.chip) +
                    (chip.stage >= 0 ? " (s" + std::to_string(chip.stage) + " r" +
                                           std::to_string(chip.rank) + ")"
                                     : " (forwards)")
              : "stage " + std::to_string(chip.stage) + " (chip " + std::to_string(chip.chip) + ")";
      svg.Text(kMargin + kLabels - 6, y + row_h / 2 + 3.2, label, 9.5,
               "text-anchor=\"end\" fill=\"#333\"");
    }
    // Every instance of the period on this chip, by lane.
    std::vector<std::tuple<int64_t, int64_t, Cat>> lane[2];
    for (int64_t j = 0; j < ph.slots; ++j) {
      const size_t base = index.Id({x, j, c, 0});
      for (size_t i = 0; i < chip.bodies[x].size(); ++i) {
        const int64_t a = run.instance_start_ns[base + i], b = run.instance_end_ns[base + i];
        if (b < 0) continue;
        const Cat cat = CatOf(chip.bodies[x][i]);
        lane[cat <= kReduce ? 0 : 1].emplace_back(a, b, cat);
      }
    }
    for (int l = 0; l < 2; ++l) {
      const double ly = l == 0 ? y + row_h * 0.08 : y + row_h * 0.58;
      const double lh = l == 0 ? row_h * 0.46 : row_h * 0.34;
      // Per pixel column, the time each kind covers. A column shows the lane's larger kind
      // (compute; send or forward), or nothing when less than a tenth of it is busy. Reduce steps
      // and receives are short: they show as ticks along the lane's edge in every column that has
      // one. Runs of columns alike become one bar, so a lane has at most a bar per pixel.
      const size_t px = static_cast<size_t>(kChart) + 1;
      std::vector<std::array<double, kCats>> cover(px, std::array<double, kCats>{});
      for (const auto& [a, b, cat] : lane[l]) {
        const double from = static_cast<double>(a - t0) / ns_per_px;
        const double to = std::max(from + 0.01, static_cast<double>(b - t0) / ns_per_px);
        for (size_t k = static_cast<size_t>(std::max(0.0, from));
             k < px && static_cast<double>(k) < to; ++k) {
          cover[k][cat] +=
              std::min(to, static_cast<double>(k + 1)) - std::max(from, static_cast<double>(k));
        }
      }
      auto bars = [&](const std::vector<int>& kinds, double y0, double h, double least) {
        auto kind = [&](size_t col) {
          int best = -1;
          double most = least;
          for (int cat : kinds) {
            if (cover[col][cat] > most) most = cover[col][cat], best = cat;
          }
          return best;
        };
        size_t k = 0;
        while (k < px) {
          const int cat = kind(k);
          size_t m = k + 1;
          while (m < px && kind(m) == cat) ++m;
          if (cat >= 0) {
            svg.Rect(kMargin + kLabels + static_cast<double>(k), y0, static_cast<double>(m - k), h,
                     std::string("bar ") + kCatName[cat], kCatColor[cat]);
          }
          k = m;
        }
      };
      if (l == 0) {
        bars({kCompute}, ly, lh, 0.1);
        bars({kReduce}, ly, lh * 0.3, 0.0);
      } else {
        bars({kSend, kForward}, ly, lh, 0.1);
        bars({kRecv}, ly + lh * 0.7, lh * 0.3, 0.0);
      }
    }
  }

  // The critical path: its steps outlined, joined from each to the next.
  std::string points;
  double last_x = -1, last_y = -1;
  for (const schedule::CriticalStep& hop : run.critical_path) {
    const schedule::InstanceIndex::Where w = index.At(hop.instance);
    auto it = row_of.find(w.chip);
    if (it == row_of.end() || hop.end_ns < t0 || hop.start_ns > t1) continue;
    const Instruction& in = s.chips[w.chip].bodies[w.phase][w.index];
    const Cat cat = CatOf(in);
    const double y = top + it->second * row_h;
    const double ly = cat <= kReduce ? y + row_h * 0.08 : y + row_h * 0.58;
    const double lh = cat <= kReduce ? row_h * 0.46 : row_h * 0.34;
    const double bx = X(hop.start_ns);
    const double bw = std::max(1.0, X(hop.end_ns) - bx);
    svg.Rect(bx, ly, bw, lh, "critical", "none", "stroke=\"#d7191c\" stroke-width=\"1.4\"",
             hop.what + ": " + schedule::DescribeStep(in) + ", " + Us(hop.end_ns - hop.start_ns) +
                 " us");
    const double cy = ly + lh / 2;
    if (last_x >= 0 && std::fabs(cy - last_y) > 0.1) {
      points += Num(bx) + "," + Num(cy) + " ";
    }
    if (points.empty()) points += Num(bx) + "," + Num(cy) + " ";
    points += Num(bx + bw) + "," + Num(cy) + " ";
    last_x = bx + bw;
    last_y = cy;
  }
  if (!points.empty()) {
    svg.Raw("<polyline class=\"critical-path\" points=\"" + points +
            "\" fill=\"none\" stroke=\"#d7191c\" stroke-width=\"1.2\" stroke-opacity=\"0.8\"/>\n");
  }

  // Legend.
  double ly = top + rows * row_h + 28;
  double lx = kMargin + kLabels;
  svg.Raw("<g class=\"legend\">\n");
  for (int cat = 0; cat < kCats; ++cat) {
    svg.Rect(lx, ly - 10, 14, 12, "legend-swatch", kCatColor[cat]);
    svg.Text(lx + 19, ly, kCatName[cat], 11, "fill=\"#222\"");
    lx += 95;
  }
  svg.Rect(lx, ly - 10, 14, 12, "legend-swatch", "#ffffff", "stroke=\"#bbb\"");
  svg.Text(lx + 19, ly, "idle", 11, "fill=\"#222\"");
  lx += 70;
  svg.Rect(lx, ly - 10, 14, 12, "legend-swatch", "none", "stroke=\"#d7191c\" stroke-width=\"1.4\"");
  svg.Text(lx + 19, ly, "critical path of sequence 0's token", 11, "fill=\"#222\"");
  svg.Raw("</g>\n");
  svg.SetHeight(ly + 16 + kMargin);
  return svg.Finish();
}

}  // namespace lockstep::viz
