// Reading topology files: YAML text -> validated Topology (format: io.h, topology/FORMAT.md).
#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/topology/io.h"
#include "yaml_tree.h"

namespace lockstep::topology {
namespace {

using internal::YamlNode;

// Far beyond any real chip (lpu-v1 has 16), small enough that a typo cannot exhaust memory.
constexpr int64_t kMaxPorts = 4096;

constexpr std::array<std::string_view, 6> kTopFields = {"format",   "name",  "chip_specs",
                                                        "defaults", "chips", "links"};
constexpr std::array<std::string_view, 10> kSpecFields = {"name",
                                                          "preset",
                                                          "sram_bytes",
                                                          "peak_ops_per_s",
                                                          "memory_bandwidth_bytes_per_s",
                                                          "clock_hz",
                                                          "ports",
                                                          "link_bandwidth_bytes_per_s",
                                                          "link_latency_ns",
                                                          "cost_params"};
constexpr std::array<std::string_view, 1> kDefaultsFields = {"spec"};
constexpr std::array<std::string_view, 6> kChipFields = {"id",   "node",  "rack",
                                                         "spec", "spare", "down"};
constexpr std::array<std::string_view, 5> kLinkFields = {"a", "b", "bandwidth_bytes_per_s",
                                                         "latency_ns", "down"};
constexpr std::array<std::string_view, kDtypeCount> kDtypeFields = {"fp32", "fp16", "bf16", "int8",
                                                                    "fp8"};

std::string JoinNames(std::span<const std::string_view> names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

std::string Join(const std::vector<std::string>& names) {
  std::vector<std::string_view> views(names.begin(), names.end());
  return JoinNames(views);
}

// Parses an exact integer: [+-]digits[.digits][(e|E)[+-]digits]. "1.4e10" is 14000000000;
// "1.5" and anything beyond int64 are not integers. Works on the text, never through a double,
// so large bandwidths are not rounded.
std::optional<int64_t> ParseExactInteger(std::string_view s) {
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  std::string digits;  // mantissa digits without the point
  int64_t point_shift = 0;
  bool any_digit = false;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') digits += s[i++], any_digit = true;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      digits += s[i++];
      ++point_shift;
      any_digit = true;
    }
  }
  if (!any_digit) return std::nullopt;
  int64_t exponent = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) exp_negative = s[i++] == '-';
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (exponent > 1000) return std::nullopt;
      exponent = exponent * 10 + (s[i++] - '0');
    }
    if (i == start) return std::nullopt;
    if (exp_negative) exponent = -exponent;
  }
  if (i != s.size()) return std::nullopt;
  // value = digits * 10^(exponent - point_shift)
  int64_t shift = exponent - point_shift;
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return 0;
  digits.erase(0, first);
  while (shift < 0) {
    if (digits.back() != '0') return std::nullopt;  // a fraction remains
    digits.pop_back();
    ++shift;
  }
  if (static_cast<int64_t>(digits.size()) + shift > 19) return std::nullopt;
  digits.append(static_cast<size_t>(shift), '0');
  // Accumulate negatively so INT64_MIN is representable.
  int64_t value = 0;
  for (char c : digits) {
    const int d = c - '0';
    if (value < (INT64_MIN + d) / 10) return std::nullopt;
    value = value * 10 - d;
  }
  if (!negative) {
    if (value == INT64_MIN) return std::nullopt;
    value = -value;
  }
  return value;
}

// Reads one topology document; every failure names source:line: field.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  [[noreturn]] void Fail(int line, std::string_view path, std::string_view message) const {
    std::string out = source_ + ":" + std::to_string(line) + ": ";
    if (!path.empty()) out.append(path).append(": ");
    out.append(message);
    throw InvalidInput(out);
  }

  // The entries of one mapping, checked once for shape, unknown and repeated fields.
  class Fields {
   public:
    Fields(const Reader& r, const YamlNode& map, std::string path,
           std::span<const std::string_view> valid)
        : r_(r), map_(map), path_(std::move(path)) {
      if (!map.is_map()) {
        r.Fail(map.line, path_,
               "expected a mapping with fields " + JoinNames(valid) + ", got " +
                   std::string(Describe(map)));
      }
      for (size_t k = 0; k < map.items.size(); k += 2) {
        const YamlNode& key = map.items[k];
        if (!key.is_scalar()) r.Fail(key.line, path_, "a field name must be a plain word");
        if (std::find(valid.begin(), valid.end(), key.text) == valid.end()) {
          r.Fail(key.line, path_,
                 "unknown field '" + key.text + "' (valid fields: " + JoinNames(valid) + ")");
        }
        for (size_t j = 0; j < k; j += 2) {
          if (map.items[j].text == key.text) {
            r.Fail(key.line, path_,
                   "field '" + key.text + "' is given twice (also at line " +
                       std::to_string(map.items[j].line) + ")");
          }
        }
      }
    }

    const YamlNode* Find(std::string_view name) const {
      for (size_t k = 0; k < map_.items.size(); k += 2) {
        if (map_.items[k].text == name) return &map_.items[k + 1];
      }
      return nullptr;
    }

    const YamlNode& Require(std::string_view name, std::string_view hint = {}) const {
      if (const YamlNode* n = Find(name)) return *n;
      std::string message = "missing field '" + std::string(name) + "'";
      if (!hint.empty()) message.append(" (").append(hint).append(")");
      r_.Fail(map_.line, path_, message);
    }

    int line() const { return map_.line; }
    const std::string& path() const { return path_; }
    std::string Path(std::string_view field) const {
      return path_.empty() ? std::string(field) : path_ + "." + std::string(field);
    }

   private:
    const Reader& r_;
    const YamlNode& map_;
    std::string path_;
  };

  static std::string Describe(const YamlNode& n) {
    if (n.is_scalar()) return "'" + n.text + "'";
    return std::string(internal::KindName(n.kind));
  }

  int64_t Int(const YamlNode& n, const Fields& f, std::string_view field) const {
    if (n.is_scalar()) {
      if (std::optional<int64_t> v = ParseExactInteger(n.text)) return *v;
    }
    Fail(n.line, f.Path(field), "expected an integer, got " + Describe(n));
  }

  // An integer in lo..hi (message says which bound failed).
  int64_t IntIn(const YamlNode& n, const Fields& f, std::string_view field, int64_t lo,
                int64_t hi) const {
    const int64_t v = Int(n, f, field);
    if (v < lo) {
      Fail(n.line, f.Path(field), "must be >= " + std::to_string(lo) + ", got " + n.text);
    }
    if (v > hi) {
      Fail(n.line, f.Path(field), "must be <= " + std::to_string(hi) + ", got " + n.text);
    }
    return v;
  }

  bool Bool(const YamlNode& n, const Fields& f, std::string_view field) const {
    if (n.is_scalar()) {
      if (n.text == "true" || n.text == "True" || n.text == "TRUE") return true;
      if (n.text == "false" || n.text == "False" || n.text == "FALSE") return false;
    }
    Fail(n.line, f.Path(field), "expected true or false, got " + Describe(n));
  }

  std::string String(const YamlNode& n, const Fields& f, std::string_view field,
                     bool allow_empty = false) const {
    if (!n.is_scalar() || (n.text.empty() && !allow_empty)) {
      Fail(n.line, f.Path(field), "expected a name, got " + Describe(n));
    }
    return n.text;
  }

  // "chip:port", both decimal.
  PortRef Port(const YamlNode& n, const Fields& f, std::string_view field) const {
    auto number = [](std::string_view s) -> std::optional<int> {
      if (s.empty() || s.size() > 9) return std::nullopt;
      int v = 0;
      for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
      }
      return v;
    };
    if (n.is_scalar()) {
      const std::string_view s = n.text;
      const size_t colon = s.find(':');
      if (colon != std::string_view::npos) {
        std::optional<int> chip = number(s.substr(0, colon));
        std::optional<int> port = number(s.substr(colon + 1));
        if (chip && port) return PortRef{*chip, *port};
      }
    }
    Fail(n.line, f.Path(field), "expected \"chip:port\" like \"3:7\", got " + Describe(n));
  }

  // A list; `key:` with nothing after it is an empty list.
  const YamlNode& List(const YamlNode& n, std::string_view path) const {
    static const YamlNode kEmpty{YamlNode::Kind::kSequence, 0, {}, {}};
    if (n.is_null()) return kEmpty;
    if (!n.is_sequence()) Fail(n.line, path, "expected a list, got " + Describe(n));
    return n;
  }

  Topology Read(const YamlNode& root);

 private:
  void ReadSpec(Topology& topo, const YamlNode& entry, size_t index) const;
  void ReadChips(Topology& topo, const YamlNode& chips, int default_spec) const;
  void ReadLinks(Topology& topo, const YamlNode& links) const;
  std::string SpecNames(const Topology& topo) const {
    std::vector<std::string> names;
    for (const ChipSpec& s : topo.specs()) names.push_back(s.name);
    return names.empty() ? "none: chip_specs is empty" : "chip_specs defines " + Join(names);
  }

  const std::string& source_;  // the caller's; a Reader lives only inside ParseTopologyYaml
};

Topology Reader::Read(const YamlNode& root) {
  if (root.is_null()) {
    Fail(root.line, "",
         "empty file; a topology file starts with 'format: " + std::string(kTopologyFormat) + "'");
  }
  const Fields top(*this, root, "", kTopFields);

  const YamlNode& format = top.Require("format", "the first line of a topology file is 'format: " +
                                                     std::string(kTopologyFormat) + "'");
  if (!format.is_scalar() || format.text != kTopologyFormat) {
    Fail(format.line, "format",
         "unsupported format " + Describe(format) + " (this build reads " +
             std::string(kTopologyFormat) + ")");
  }

  Topology topo;
  if (const YamlNode* name = top.Find("name")) {
    topo.set_name(String(*name, top, "name", /*allow_empty=*/true));
  }

  const YamlNode& specs = List(
      top.Require("chip_specs", "e.g. chip_specs: [{name: lpu-v1, preset: lpu-v1}]"), "chip_specs");
  for (size_t i = 0; i < specs.items.size(); ++i) ReadSpec(topo, specs.items[i], i);

  int default_spec = topo.specs().empty() ? -1 : 0;
  if (const YamlNode* defaults = top.Find("defaults")) {
    const Fields d(*this, *defaults, "defaults", kDefaultsFields);
    if (const YamlNode* spec = d.Find("spec")) {
      const std::string name = String(*spec, d, "spec");
      std::optional<int> index = topo.FindSpec(name);
      if (!index) {
        Fail(spec->line, d.Path("spec"),
             "unknown chip spec '" + name + "' (" + SpecNames(topo) + ")");
      }
      default_spec = *index;
    }
  }

  ReadChips(topo, List(top.Require("chips", "a list of {id, node, rack}"), "chips"), default_spec);
  if (const YamlNode* links = top.Find("links")) ReadLinks(topo, List(*links, "links"));
  return topo;
}

void Reader::ReadSpec(Topology& topo, const YamlNode& entry, size_t index) const {
  const Fields f(*this, entry, "chip_specs[" + std::to_string(index) + "]", kSpecFields);
  ChipSpec spec;
  if (const YamlNode* preset = f.Find("preset")) {
    const std::string name = String(*preset, f, "preset");
    std::optional<ChipSpec> base = ChipPreset(name);
    if (!base) {
      std::vector<std::string> presets = ChipPresetNames();
      Fail(preset->line, f.Path("preset"),
           "unknown preset '" + name + "' (presets: " + Join(presets) + ")");
    }
    spec = *base;
  } else {
    // Without a preset every figure must be written out: a silent zero would be a broken chip.
    for (std::string_view field : kSpecFields) {
      if (field == "preset" || field == "cost_params") continue;
      f.Require(field, "a spec without 'preset' gives every field; or add e.g. preset: lpu-v1");
    }
  }
  const YamlNode& name = f.Require("name");
  spec.name = String(name, f, "name");
  auto int_field = [&](std::string_view field, auto& out, int64_t hi) {
    if (const YamlNode* n = f.Find(field)) {
      using T = std::remove_reference_t<decltype(out)>;
      out = static_cast<T>(IntIn(*n, f, field, std::numeric_limits<T>::min(), hi));
    }
  };
  constexpr int64_t kMax = INT64_MAX;
  int_field("sram_bytes", spec.sram_bytes, kMax);
  int_field("memory_bandwidth_bytes_per_s", spec.memory_bandwidth_bytes_per_s, kMax);
  int_field("clock_hz", spec.clock_hz, kMax);
  int_field("ports", spec.ports, kMaxPorts);
  int_field("link_bandwidth_bytes_per_s", spec.link_bandwidth_bytes_per_s, kMax);
  int_field("link_latency_ns", spec.link_latency_ns, kMax);
  if (const YamlNode* peak = f.Find("peak_ops_per_s")) {
    // Listed dtypes override the preset's figure; unlisted ones keep it (0 without a preset).
    const Fields p(*this, *peak, f.Path("peak_ops_per_s"), kDtypeFields);
    for (Dtype d : kAllDtypes) {
      if (const YamlNode* n = p.Find(DtypeName(d))) {
        spec.peak_ops_per_s[static_cast<int>(d)] = Int(*n, p, DtypeName(d));
      }
    }
  }

  if (const YamlNode* cost = f.Find("cost_params")) {
    // Named figures of the cost model, kept as written: partition checks names and values.
    const std::string path = f.Path("cost_params");
    if (!cost->is_map()) {
      Fail(cost->line, path,
           "expected a mapping of cost figures (name: number), got " + Describe(*cost));
    }
    for (size_t k = 0; k < cost->items.size(); k += 2) {
      const YamlNode& key = cost->items[k];
      const YamlNode& value = cost->items[k + 1];
      if (!key.is_scalar() || key.text.empty())
        Fail(key.line, path, "a figure name must be a word");
      if (!value.is_scalar() || value.text.empty()) {
        Fail(value.line, path + "." + key.text, "expected a number, got " + Describe(value));
      }
      if (!spec.cost_params.emplace(key.text, value.text).second) {
        Fail(key.line, path, "figure '" + key.text + "' is given twice");
      }
    }
  }

  if (std::optional<int> earlier = topo.FindSpec(spec.name)) {
    Fail(name.line, f.Path("name"),
         "chip spec '" + spec.name + "' is defined twice (also chip_specs[" +
             std::to_string(*earlier) + "])");
  }
  if (std::string bad = CheckChipSpec(spec); !bad.empty()) {
    // CheckChipSpec names the field first ("ports must be > 0"); point at it when it is written.
    const std::string field = bad.substr(0, bad.find_first_of(" ."));
    const YamlNode* n = f.Find(field);
    Fail(n ? n->line : f.line(), n ? f.Path(field) : f.path(),
         "chip spec '" + spec.name + "': " + bad);
  }
  topo.AddSpec(spec);
}

void Reader::ReadChips(Topology& topo, const YamlNode& chips, int default_spec) const {
  struct Entry {
    int node = 0;
    int rack = 0;
    int spec = 0;
    bool spare = false;
    bool down = false;
    size_t index = 0;  // position in the file
    int line = 0;
  };
  const size_t count = chips.items.size();
  if (count > static_cast<size_t>(INT32_MAX)) Fail(chips.line, "chips", "too many chips");
  std::vector<Entry> by_id(count);
  std::vector<bool> seen(count, false);
  for (size_t i = 0; i < count; ++i) {
    const YamlNode& item = chips.items[i];
    const Fields f(*this, item, "chips[" + std::to_string(i) + "]", kChipFields);
    const YamlNode& id_node = f.Require("id");
    const int64_t id = Int(id_node, f, "id");
    if (id < 0 || id >= static_cast<int64_t>(count)) {
      Fail(id_node.line, f.Path("id"),
           "id " + id_node.text + " is out of range: the file lists " + std::to_string(count) +
               " chips, so ids must be exactly 0.." + std::to_string(count - 1));
    }
    Entry& e = by_id[id];
    if (seen[id]) {
      Fail(id_node.line, f.Path("id"),
           "duplicate id " + std::to_string(id) + " (also chips[" + std::to_string(e.index) +
               "] at line " + std::to_string(e.line) + ")");
    }
    seen[id] = true;
    e.index = i;
    e.line = item.line;
    e.node = static_cast<int>(IntIn(f.Require("node"), f, "node", 0, INT32_MAX));
    e.rack = static_cast<int>(IntIn(f.Require("rack"), f, "rack", 0, INT32_MAX));
    if (const YamlNode* spec = f.Find("spec")) {
      const std::string name = String(*spec, f, "spec");
      std::optional<int> index = topo.FindSpec(name);
      if (!index) {
        Fail(spec->line, f.Path("spec"),
             "unknown chip spec '" + name + "' (" + SpecNames(topo) + ")");
      }
      e.spec = *index;
    } else {
      if (default_spec < 0) {
        Fail(item.line, f.path(), "no chip spec to use: chip_specs is empty");
      }
      e.spec = default_spec;
    }
    if (const YamlNode* spare = f.Find("spare")) e.spare = Bool(*spare, f, "spare");
    if (const YamlNode* down = f.Find("down")) e.down = Bool(*down, f, "down");
  }
  // count entries with distinct ids in 0..count-1: every id is present exactly once.
  for (const Entry& e : by_id) {
    const ChipId id = topo.AddChip(e.node, e.rack, e.spare, e.spec);
    if (e.down) topo.SetChipDown(id);
  }
}

void Reader::ReadLinks(Topology& topo, const YamlNode& links) const {
  for (size_t i = 0; i < links.items.size(); ++i) {
    const YamlNode& item = links.items[i];
    const Fields f(*this, item, "links[" + std::to_string(i) + "]", kLinkFields);
    const YamlNode& a_node = f.Require("a");
    const YamlNode& b_node = f.Require("b");
    const PortRef a = Port(a_node, f, "a");
    const PortRef b = Port(b_node, f, "b");
    const YamlNode* bw_node = f.Find("bandwidth_bytes_per_s");
    const YamlNode* lat_node = f.Find("latency_ns");
    // Unwritten figures come from chip a's spec. For an unknown chip a, any placeholder will
    // do: AddLink rejects the chip before it looks at the figures.
    const ChipSpec* a_spec = topo.has_chip(a.chip) ? &topo.spec_of(a.chip) : nullptr;
    const int64_t bandwidth = bw_node ? Int(*bw_node, f, "bandwidth_bytes_per_s")
                                      : (a_spec ? a_spec->link_bandwidth_bytes_per_s : 1);
    const int64_t latency =
        lat_node ? Int(*lat_node, f, "latency_ns") : (a_spec ? a_spec->link_latency_ns : 0);
    LinkId id = 0;
    try {
      id = topo.AddLink(a, b, bandwidth, latency);
    } catch (const Error& e) {
      // AddLink's message says what is wrong; find which field it is about, in AddLink's order.
      for (auto [end, node, field] : {std::tuple{a, &a_node, "a"}, std::tuple{b, &b_node, "b"}}) {
        if (!topo.has_chip(end.chip) || end.port < 0 || end.port >= topo.spec_of(end.chip).ports) {
          Fail(node->line, f.Path(field), e.what());
        }
        if (std::optional<LinkId> used = topo.LinkAt(end)) {
          // Links are added in file order, so link id k is links[k].
          const Link& prev = topo.link(*used);
          const std::string where = "links[" + std::to_string(*used) + "] at line " +
                                    std::to_string(links.items[*used].line);
          if ((prev.a == a && prev.b == b) || (prev.a == b && prev.b == a)) {
            Fail(item.line, f.path(),
                 "duplicate link " + FormatPortRef(a) + " <-> " + FormatPortRef(b) +
                     " (same ports as " + where + ")");
          }
          Fail(node->line, f.Path(field), std::string(e.what()) + " (" + where + ")");
        }
      }
      if (bw_node && bandwidth <= 0) Fail(bw_node->line, f.Path("bandwidth_bytes_per_s"), e.what());
      if (lat_node && latency < 0) Fail(lat_node->line, f.Path("latency_ns"), e.what());
      Fail(item.line, f.path(), e.what());
    }
    if (const YamlNode* down = f.Find("down"); down && Bool(*down, f, "down")) {
      topo.SetLinkDown(id);
    }
  }
}

}  // namespace

Topology ParseTopologyYaml(std::string_view text, const std::string& source_name) {
  const YamlNode root = internal::ParseYamlTree(text, source_name);
  return Reader(source_name).Read(root);
}

}  // namespace lockstep::topology
