// PlanSvg: the plan on its system (svg.h).
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "lockstep/topology/routing.h"
#include "lockstep/viz/svg.h"
#include "palette.h"
#include "svg_writer.h"

namespace lockstep::viz {
namespace {

using topology::ChipId;

constexpr double kWidth = 1400;  // the drawing's width
constexpr double kMargin = 20;
constexpr double kHeader = 64;   // title and notes above the drawing
constexpr double kMinChip = 11;  // smallest readable chip square
constexpr double kMaxChip = 40;
constexpr double kMinNode = 11;
constexpr const char* kUnused = "#e3e3e3";
constexpr const char* kDown = "#d7191c";

// What is drawn as one square.
enum class Level { kChip, kNode, kRack };

struct Role {
  int stage = -1;
  int rank = -1;
};

int CeilSqrt(int n) { return std::max(1, static_cast<int>(std::ceil(std::sqrt(n)))); }

std::string Layers(const partition::StagePlan& st) {
  std::string s;
  if (st.has_embedding) s += "embedding";
  if (st.end_layer > st.first_layer) {
    if (!s.empty()) s += " + ";
    s += st.end_layer - st.first_layer == 1
             ? "layer " + std::to_string(st.first_layer)
             : "layers " + std::to_string(st.first_layer) + "-" + std::to_string(st.end_layer - 1);
  }
  if (st.has_head) s += s.empty() ? "LM head" : " + LM head";
  return s;
}

}  // namespace

std::string PlanSvg(const partition::Plan& plan) {
  const topology::Topology& topo = partition::PlanTopology(plan);
  const int stages = static_cast<int>(plan.stages.size());
  std::vector<Role> role(static_cast<size_t>(topo.chip_count()));
  for (const partition::StagePlan& st : plan.stages) {
    for (size_t r = 0; r < st.chips.size(); ++r) {
      if (topo.has_chip(st.chips[r]))
        role[static_cast<size_t>(st.chips[r])] = {st.index, static_cast<int>(r)};
    }
  }
  // Racks -> nodes -> chips, in id order.
  std::map<int, std::map<int, std::vector<ChipId>>> racks;
  for (const topology::Chip& c : topo.chips()) racks[c.rack][c.node].push_back(c.id);
  size_t max_nodes = 1, max_chips = 1;
  for (const auto& [r, nodes] : racks) {
    max_nodes = std::max(max_nodes, nodes.size());
    for (const auto& [n, chips] : nodes) max_chips = std::max(max_chips, chips.size());
  }
  const int rack_count = static_cast<int>(racks.size());
  const int node_cols = CeilSqrt(static_cast<int>(max_nodes));
  const int node_rows = (static_cast<int>(max_nodes) + node_cols - 1) / node_cols;
  const int chip_cols = std::max(1, CeilSqrt(2 * static_cast<int>(max_chips)));
  const int chip_rows = (static_cast<int>(max_chips) + chip_cols - 1) / chip_cols;
  const int rack_cols = std::min(rack_count, CeilSqrt(rack_count));
  const int rack_rows = (rack_count + rack_cols - 1) / rack_cols;
  // Gaps: between racks, nodes, chips.
  const double rack_gap = rack_count > 1 ? 14 : 0, node_gap = 6, chip_gap = 1.5, pad = 4;
  const double rack_w = (kWidth - rack_gap * (rack_cols - 1)) / rack_cols;
  const double node_w = (rack_w - 2 * pad - node_gap * (node_cols - 1)) / node_cols;
  double chip = (node_w - 2 * pad - chip_gap * (chip_cols - 1)) / chip_cols;
  Level level = Level::kChip;
  if (chip < kMinChip) level = node_w >= kMinNode ? Level::kNode : Level::kRack;
  chip = std::min(chip, kMaxChip);
  // Heights follow the squares actually drawn.
  const double node_inner_w = chip_cols * chip + (chip_cols - 1) * chip_gap;
  const double node_h = level == Level::kChip
                            ? chip_rows * chip + (chip_rows - 1) * chip_gap + 2 * pad
                            : std::min(node_w, 60.0);
  const double node_box_w = level == Level::kChip ? node_inner_w + 2 * pad : node_w;
  const double rack_inner_w = node_cols * node_box_w + (node_cols - 1) * node_gap;
  const double rack_h = level == Level::kRack
                            ? std::min(rack_w, 80.0)
                            : node_rows * node_h + (node_rows - 1) * node_gap + 2 * pad + 14;
  const double rack_box_w = level == Level::kRack ? rack_w : rack_inner_w + 2 * pad;
  const double drawing_h = rack_rows * rack_h + (rack_rows - 1) * rack_gap;
  // The canvas: as wide as the drawing (at least wide enough for the header and legend).
  const double canvas_w =
      std::max(1000.0, rack_cols * rack_box_w + (rack_cols - 1) * rack_gap) + 2 * kMargin;

  // Where each chip is drawn: the centre of its square (chip, node part or rack part).
  std::vector<std::pair<double, double>> centre(static_cast<size_t>(topo.chip_count()), {0, 0});
  struct Part {  // one stage's (or role's) share of a node or rack square
    double x, y, w, h;
    int stage;
    std::string kind;  // "stage", "spare", "unused"
    int chips = 0;
    int down = 0;
  };
  std::vector<Part> parts;  // node or rack level
  Svg svg(canvas_w, 0);     // height set below
  svg.Raw(
      "<defs>\n"
      "<pattern id=\"spare\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
      "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#f0f0f0\"/>"
      "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#9a9a9a\" "
      "stroke-width=\"2\"/></pattern>\n"
      "<marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" "
      "markerHeight=\"7\" orient=\"auto\"><path d=\"M0 0L10 5L0 10z\" fill=\"#1b1b1b\"/></marker>\n"
      "<marker id=\"arrow-token\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" "
      "markerHeight=\"7\" orient=\"auto\"><path d=\"M0 0L10 5L0 10z\" fill=\"#b2182b\"/></marker>\n"
      "</defs>\n");
  std::string shapes, outlines;
  auto chip_fill = [&](ChipId c) -> std::string {
    const topology::Chip& ch = topo.chip(c);
    if (role[static_cast<size_t>(c)].stage >= 0)
      return StageColor(role[static_cast<size_t>(c)].stage);
    if (ch.spare) return "url(#spare)";
    return kUnused;
  };
  auto kind_of = [&](ChipId c) -> std::pair<std::string, int> {
    if (role[static_cast<size_t>(c)].stage >= 0)
      return {"stage", role[static_cast<size_t>(c)].stage};
    return {topo.chip(c).spare ? "spare" : "unused", -1};
  };
  // Squares split by what is on them, in stage order (spares, then unused, last).
  auto split = [&](const std::vector<ChipId>& chips, double x, double y, double w, double h) {
    std::map<std::pair<int, std::string>, std::pair<int, int>> count;  // -> chips, down
    for (ChipId c : chips) {
      const auto [kind, stage] = kind_of(c);
      auto& n =
          count[{kind == "stage" ? stage : (kind == "spare" ? 1 << 30 : (1 << 30) + 1), kind}];
      ++n.first;
      n.second += topo.chip(c).down ? 1 : 0;
    }
    double at = x;
    for (const auto& [key, n] : count) {
      const double part_w = w * n.first / static_cast<double>(chips.size());
      parts.push_back({at, y, part_w, h, key.second == "stage" ? key.first : -1, key.second,
                       n.first, n.second});
      for (ChipId c : chips) {
        const auto [kind, stage] = kind_of(c);
        if (kind == key.second && (kind != "stage" || stage == key.first)) {
          centre[static_cast<size_t>(c)] = {at + part_w / 2, y + h / 2};
        }
      }
      at += part_w;
    }
  };

  const double top = kMargin + kHeader;
  int ri = 0;
  for (const auto& [rack, nodes] : racks) {
    const double rx = kMargin + (ri % rack_cols) * (rack_w + rack_gap);
    const double ry = top + (ri / rack_cols) * (rack_h + rack_gap);
    ++ri;
    if (level == Level::kRack) {
      std::vector<ChipId> all;
      for (const auto& [n, chips] : nodes) all.insert(all.end(), chips.begin(), chips.end());
      split(all, rx, ry, rack_box_w, rack_h);
      continue;
    }
    svg.Rect(rx, ry, rack_box_w, rack_h, "rack", "#f6f6f6", "stroke=\"#9a9a9a\" rx=\"4\"");
    if (rack_box_w >= 60) {
      svg.Text(rx + pad, ry + 11, racks.size() > 1 ? "rack " + std::to_string(rack) : "rack", 9,
               "fill=\"#555\"");
    }
    int ni = 0;
    for (const auto& [node, chips] : nodes) {
      const double nx = rx + pad + (ni % node_cols) * (node_box_w + node_gap);
      const double ny = ry + pad + 14 + (ni / node_cols) * (node_h + node_gap);
      ++ni;
      if (level == Level::kNode) {
        split(chips, nx, ny, node_box_w, node_h);
        continue;
      }
      svg.Rect(nx, ny, node_box_w, node_h, "node", "#ffffff", "stroke=\"#c8c8c8\" rx=\"2\"");
      // TP groups: the chips of one stage in this node, outlined together.
      std::map<int, std::pair<std::pair<double, double>, std::pair<double, double>>> box;
      for (size_t k = 0; k < chips.size(); ++k) {
        const ChipId c = chips[k];
        const double cx = nx + pad + static_cast<double>(k % chip_cols) * (chip + chip_gap);
        const double cy = ny + pad + static_cast<double>(k / chip_cols) * (chip + chip_gap);
        centre[static_cast<size_t>(c)] = {cx + chip / 2, cy + chip / 2};
        const Role& rl = role[static_cast<size_t>(c)];
        const topology::Chip& ch = topo.chip(c);
        std::string title = "chip " + std::to_string(c);
        std::string cls = "chip";
        if (rl.stage >= 0) {
          const partition::StagePlan& st = plan.stages[static_cast<size_t>(rl.stage)];
          title += ": stage " + std::to_string(rl.stage) + " rank " + std::to_string(rl.rank) +
                   " of TP " + std::to_string(st.tp) + " (" + Layers(st) + ")";
        } else if (ch.spare) {
          title += ": spare";
          cls += " spare";
        } else {
          title += ": unused";
        }
        if (ch.down) {
          title += ", down";
          cls += " down";
        }
        svg.Rect(cx, cy, chip, chip, cls, chip_fill(c),
                 "data-chip=\"" + std::to_string(c) + "\" data-stage=\"" +
                     std::to_string(rl.stage) + "\"",
                 title);
        if (ch.down) {
          svg.Raw("<path class=\"down-mark\" d=\"M" + Num(cx + 2) + " " + Num(cy + 2) + "L" +
                  Num(cx + chip - 2) + " " + Num(cy + chip - 2) + "M" + Num(cx + chip - 2) + " " +
                  Num(cy + 2) + "L" + Num(cx + 2) + " " + Num(cy + chip - 2) + "\" stroke=\"" +
                  kDown + "\" stroke-width=\"2.5\"/>\n");
        }
        if (rl.stage >= 0 && chip >= 16) {
          svg.Text(cx + chip / 2, cy + chip / 2 + chip * 0.16, std::to_string(rl.stage),
                   std::min(11.0, chip * 0.42),
                   "text-anchor=\"middle\" fill=\"#1a1a1a\" pointer-events=\"none\"");
        }
        if (rl.stage >= 0) {
          auto [it, fresh] = box.try_emplace(
              rl.stage,
              std::make_pair(std::make_pair(cx, cy), std::make_pair(cx + chip, cy + chip)));
          it->second.first.first = std::min(it->second.first.first, cx);
          it->second.first.second = std::min(it->second.first.second, cy);
          it->second.second.first = std::max(it->second.second.first, cx + chip);
          it->second.second.second = std::max(it->second.second.second, cy + chip);
        }
      }
      for (const auto& [stage, b] : box) {
        if (plan.stages[static_cast<size_t>(stage)].tp < 2) continue;
        outlines += "<rect class=\"tp-group\" data-stage=\"" + std::to_string(stage) + "\" x=\"" +
                    Num(b.first.first - 1.5) + "\" y=\"" + Num(b.first.second - 1.5) +
                    "\" width=\"" + Num(b.second.first - b.first.first + 3) + "\" height=\"" +
                    Num(b.second.second - b.first.second + 3) +
                    "\" fill=\"none\" stroke=\"#202020\" stroke-width=\"1.6\" rx=\"2\"/>\n";
      }
    }
  }
  // Node or rack squares: one part per stage on it.
  const char* part_cls = level == Level::kNode ? "node-cell" : "rack-cell";
  for (const Part& p : parts) {
    std::string cls = part_cls;
    std::string fill = kUnused;
    std::string title = std::to_string(p.chips) + " chip" + (p.chips == 1 ? "" : "s");
    if (p.kind == "stage") {
      fill = StageColor(p.stage);
      const partition::StagePlan& st = plan.stages[static_cast<size_t>(p.stage)];
      title += " of stage " + std::to_string(p.stage) + " (TP " + std::to_string(st.tp) + ", " +
               Layers(st) + ")";
    } else if (p.kind == "spare") {
      fill = "url(#spare)";
      cls += " spare";
      title += ", spare";
    } else {
      title += ", unused";
    }
    if (p.down > 0) {
      cls += " down";
      title += ", " + std::to_string(p.down) + " down";
    }
    svg.Rect(
        p.x, p.y, p.w, p.h, cls, fill,
        "data-stage=\"" + std::to_string(p.stage) + "\" stroke=\"#ffffff\" stroke-width=\"0.6\"",
        title);
    if (p.down > 0) {
      svg.Rect(p.x + p.w - 5, p.y, 5, 5, "down-mark", kDown);
    }
    if (p.kind == "stage" && p.w >= 16 && p.h >= 12) {
      svg.Text(p.x + p.w / 2, p.y + p.h / 2 + 3.5, std::to_string(p.stage),
               std::min(10.0, p.w * 0.4), "text-anchor=\"middle\" fill=\"#1a1a1a\"");
    }
    if (p.kind == "stage" && plan.stages[static_cast<size_t>(p.stage)].tp > 1) {
      outlines += "<rect class=\"tp-group\" data-stage=\"" + std::to_string(p.stage) + "\" x=\"" +
                  Num(p.x + 0.6) + "\" y=\"" + Num(p.y + 0.6) + "\" width=\"" +
                  Num(std::max(0.0, p.w - 1.2)) + "\" height=\"" + Num(std::max(0.0, p.h - 1.2)) +
                  "\" fill=\"none\" stroke=\"#202020\" stroke-width=\"1\"/>\n";
    }
  }
  svg.Raw(outlines);

  // Routes: rank 0 of each stage to rank 0 of the next, hop by hop; the token back dashed.
  topology::Router router(topo);
  for (int s = 0; s < stages && stages > 1; ++s) {
    const int next = (s + 1) % stages;
    const ChipId a = plan.stages[static_cast<size_t>(s)].chips.front();
    const ChipId b = plan.stages[static_cast<size_t>(next)].chips.front();
    std::optional<topology::Route> route = router.FindRoute(a, b);
    if (!route) continue;
    std::string points;
    std::pair<double, double> last{-1, -1};
    for (ChipId c : route->chips) {
      const auto& p = centre[static_cast<size_t>(c)];
      if (p == last) continue;
      points += Num(p.first) + "," + Num(p.second) + " ";
      last = p;
    }
    const bool token = next == 0;
    svg.Raw("<polyline class=\"route" + std::string(token ? " token" : "") + "\" data-from=\"" +
            std::to_string(s) + "\" data-to=\"" + std::to_string(next) + "\" points=\"" + points +
            "\" fill=\"none\" stroke=\"" + (token ? "#b2182b" : "#1b1b1b") +
            "\" stroke-opacity=\"0.7\" stroke-width=\"" + (level == Level::kChip ? "1.6" : "1.1") +
            "\"" + (token ? " stroke-dasharray=\"5 3\"" : "") + " marker-end=\"url(#arrow" +
            (token ? "-token" : "") + ")\"><title>stage " + std::to_string(s) + " to stage " +
            std::to_string(next) + ": " + std::to_string(route->hop_count()) + " hop" +
            (route->hop_count() == 1 ? "" : "s") + "</title></polyline>\n");
  }

  // Header: what this is, and what a square stands for.
  double y = kMargin + 16;
  int used = 0, down = 0, spare = 0;
  for (const topology::Chip& c : topo.chips()) {
    used += role[static_cast<size_t>(c.id)].stage >= 0;
    down += c.down;
    spare += c.spare;
  }
  std::set<int> tps;
  for (const partition::StagePlan& st : plan.stages) tps.insert(st.tp);
  std::string tp_list;
  for (int t : tps) tp_list += (tp_list.empty() ? "" : "/") + std::to_string(t);
  svg.Text(kMargin, y,
           plan.model + " on " + plan.topology + ": " + std::to_string(stages) + " stage" +
               (stages == 1 ? "" : "s") + " (TP " + tp_list + ") on " + Thousands(used) + " of " +
               Thousands(topo.chip_count()) + " chips; predicted " +
               Num(static_cast<double>(plan.predicted.token_latency_ns) / 1000.0) + " us per token",
           15, "font-weight=\"bold\" fill=\"#111\"");
  y += 20;
  std::string note;
  if (level == Level::kNode) {
    note = Thousands(topo.chip_count()) +
           " chips are too many to draw one by one: each square is a node of its chips, split "
           "by the stages on it; ";
  } else if (level == Level::kRack) {
    note = Thousands(topo.chip_count()) +
           " chips are too many to draw by chip or node: each square is a rack, split by the "
           "stages on it; ";
  }
  note +=
      "colour = stage, black outline = a TP group, arrows = stage-to-stage routes "
      "(rank 0 to rank 0; dashed red: the sampled token back to stage 0)";
  svg.Text(kMargin, y, note, 11, "class=\"note\" fill=\"#333\"");

  // Legend below the drawing.
  double ly = top + drawing_h + 24;
  svg.Raw("<g class=\"legend\">\n");
  double lx = kMargin;
  auto swatch = [&](const std::string& fill, const std::string& label, const std::string& extra) {
    svg.Rect(lx, ly - 10, 14, 14, "legend-swatch", fill, extra);
    svg.Text(lx + 19, ly + 1, label, 11, "fill=\"#222\"");
    lx += 19 + 7.0 * static_cast<double>(label.size()) + 16;
    if (lx > canvas_w - 170) lx = kMargin, ly += 20;
  };
  swatch(kUnused, "unused chip", "");
  if (spare > 0) swatch("url(#spare)", "spare", "stroke=\"#999\"");
  if (down > 0) swatch(kDown, "down", "");
  swatch("none", "TP group", "stroke=\"#202020\" stroke-width=\"1.6\"");
  svg.Raw("<line x1=\"" + Num(lx) + "\" y1=\"" + Num(ly - 3) + "\" x2=\"" + Num(lx + 26) +
          "\" y2=\"" + Num(ly - 3) +
          "\" stroke=\"#1b1b1b\" stroke-width=\"1.6\" marker-end=\"url(#arrow)\"/>\n");
  svg.Text(lx + 32, ly + 1, "route", 11, "fill=\"#222\"");
  lx += 80;
  svg.Raw("<line x1=\"" + Num(lx) + "\" y1=\"" + Num(ly - 3) + "\" x2=\"" + Num(lx + 26) +
          "\" y2=\"" + Num(ly - 3) +
          "\" stroke=\"#b2182b\" stroke-width=\"1.6\" stroke-dasharray=\"5 3\" "
          "marker-end=\"url(#arrow-token)\"/>\n");
  svg.Text(lx + 32, ly + 1, "token return", 11, "fill=\"#222\"");
  ly += 24;
  lx = kMargin;
  const int listed = stages <= 24 ? stages : 12;
  for (int s = 0; s < listed; ++s) {
    const partition::StagePlan& st = plan.stages[static_cast<size_t>(s)];
    std::string label =
        "stage " + std::to_string(s) + ": " + Layers(st) + ", TP " + std::to_string(st.tp);
    const double w = 19 + 6.2 * static_cast<double>(label.size()) + 18;
    if (lx + w > canvas_w - kMargin) lx = kMargin, ly += 20;
    svg.Rect(lx, ly - 10, 14, 14, "legend-swatch stage", StageColor(s));
    svg.Text(lx + 19, ly + 1, label, 11, "fill=\"#222\"");
    lx += w;
  }
  if (listed < stages) {
    // Every stage's colour in order, with its first and last stage named.
    ly += 22;
    const double strip = std::min(canvas_w - 560, 4.0 * stages);
    for (int s = 0; s < stages; ++s) {
      svg.Rect(kMargin + strip * s / stages, ly - 10, strip / stages + 0.3, 14, "legend-strip",
               StageColor(s));
    }
    svg.Text(kMargin + strip + 10, ly + 1,
             "stages 0 to " + std::to_string(stages - 1) + " in order (" +
                 std::to_string(stages - listed) +
                 " more than listed; stage numbers are written on the drawing where they fit)",
             11, "fill=\"#222\"");
  }
  svg.Raw("</g>\n");
  svg.SetHeight(ly + 20 + kMargin);
  return svg.Finish();
}

}  // namespace lockstep::viz
