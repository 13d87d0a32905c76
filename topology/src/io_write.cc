// Writing topology files: Topology -> deterministic YAML text (format: io.h, topology/FORMAT.md).
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lockstep/topology/io.h"

namespace lockstep::topology {
namespace {

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;  // 24 bytes always hold an int64
  out.append(buf, end);
}

bool IsPlainSafe(std::string_view s) {
  if (s.empty()) return false;
  // yaml-cpp reads these plain words as null.
  if (s == "null" || s == "Null" || s == "NULL") return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool word =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (word) continue;
    if (i > 0 && (c == '-' || c == '.' || c == '/')) continue;
    return false;
  }
  return true;
}

// A string scalar: plain when that reads back as the same text, else double-quoted.
void AppendString(std::string& out, std::string_view s) {
  if (IsPlainSafe(s)) {
    out.append(s);
    return;
  }
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  out += '"';
}

void AppendPort(std::string& out, PortRef p) {
  out += '"';
  AppendInt(out, p.chip);
  out += ':';
  AppendInt(out, p.port);
  out += '"';
}

// The figures of `spec` as "key: value" pairs in file order: those that differ from `*base`,
// or all of them without a base.
std::vector<std::pair<std::string, std::string>> SpecFields(const ChipSpec& spec,
                                                            const ChipSpec* base) {
  const ChipSpec zero;
  const bool all = base == nullptr;
  if (all) base = &zero;
  std::vector<std::pair<std::string, std::string>> out;
  auto add = [&](const char* key, int64_t v, int64_t base_v) {
    if (all || v != base_v) out.emplace_back(key, std::to_string(v));
  };
  add("sram_bytes", spec.sram_bytes, base->sram_bytes);
  std::string peak;
  for (Dtype d : kAllDtypes) {
    // Unlisted dtypes read as the base figure (0 without a preset).
    if (spec.peak_ops(d) == base->peak_ops(d)) continue;
    peak += peak.empty() ? "{" : ", ";
    peak.append(DtypeName(d)).append(": ");
    AppendInt(peak, spec.peak_ops(d));
  }
  if (!peak.empty() || all) out.emplace_back("peak_ops_per_s", peak.empty() ? "{}" : peak + "}");
  add("memory_bandwidth_bytes_per_s", spec.memory_bandwidth_bytes_per_s,
      base->memory_bandwidth_bytes_per_s);
  add("clock_hz", spec.clock_hz, base->clock_hz);
  add("ports", spec.ports, base->ports);
  add("link_bandwidth_bytes_per_s", spec.link_bandwidth_bytes_per_s,
      base->link_bandwidth_bytes_per_s);
  add("link_latency_ns", spec.link_latency_ns, base->link_latency_ns);
  if (spec.cost_params != base->cost_params) {
    std::string cost;
    for (const auto& [name, value] : spec.cost_params) {
      cost += cost.empty() ? "{" : ", ";
      cost += name + ": " + value;
    }
    out.emplace_back("cost_params", cost.empty() ? "{}" : cost + "}");
  }
  return out;
}

void AppendSpec(std::string& out, const ChipSpec& spec) {
  // A spec named after a preset is written as that preset plus its differences; any other spec
  // spells out every figure so the file does not depend on what the preset says.
  std::optional<ChipSpec> preset = ChipPreset(spec.name);
  const auto fields = SpecFields(spec, preset ? &*preset : nullptr);
  if (preset && fields.empty()) {
    out += "  - {name: ";
    AppendString(out, spec.name);
    out += ", preset: ";
    AppendString(out, spec.name);
    out += "}\n";
    return;
  }
  // Several figures: one per line, easier to read and edit than one long flow line.
  out += "  - name: ";
  AppendString(out, spec.name);
  out += '\n';
  if (preset) {
    out += "    preset: ";
    AppendString(out, spec.name);
    out += '\n';
  }
  for (const auto& [key, value] : fields) out += "    " + key + ": " + value + '\n';
}

// The spec most chips use (lowest index on a tie): it goes in `defaults` so chip lines omit it.
int DefaultSpec(const Topology& topo) {
  std::vector<int> uses(topo.specs().size(), 0);
  for (const Chip& c : topo.chips()) ++uses[c.spec];
  int best = 0;
  for (int s = 1; s < static_cast<int>(uses.size()); ++s) {
    if (uses[s] > uses[best]) best = s;
  }
  return best;
}

}  // namespace

std::string WriteTopologyYaml(const Topology& topo) {
  std::string out;
  out.reserve(512 + 40 * static_cast<size_t>(topo.chip_count()) +
              32 * static_cast<size_t>(topo.link_count()));
  out += "# lockstep topology (format: topology/FORMAT.md)\n";
  out.append("format: ").append(kTopologyFormat).append("\n");
  out += "name: ";
  AppendString(out, topo.name());
  out += '\n';

  const auto& specs = topo.specs();
  out += specs.empty() ? "chip_specs: []\n" : "chip_specs:\n";
  for (const ChipSpec& s : specs) AppendSpec(out, s);
  const int default_spec = DefaultSpec(topo);
  if (!specs.empty()) {
    out += "defaults: {spec: ";
    AppendString(out, specs[default_spec].name);
    out += "}\n";
  }

  out += topo.chips().empty() ? "chips: []\n" : "chips:\n";
  for (const Chip& c : topo.chips()) {
    out += "  - {id: ";
    AppendInt(out, c.id);
    out += ", node: ";
    AppendInt(out, c.node);
    out += ", rack: ";
    AppendInt(out, c.rack);
    if (c.spec != default_spec) {
      out += ", spec: ";
      AppendString(out, specs[c.spec].name);
    }
    if (c.spare) out += ", spare: true";
    if (c.down) out += ", down: true";
    out += "}\n";
  }

  out += topo.links().empty() ? "links: []\n" : "links:\n";
  for (const Link& l : topo.links()) {
    out += "  - {a: ";
    AppendPort(out, l.a);
    out += ", b: ";
    AppendPort(out, l.b);
    // Readers take unwritten figures from chip a's spec, exactly as Topology::AddLink does.
    const ChipSpec& a_spec = topo.spec_of(l.a.chip);
    if (l.bandwidth_bytes_per_s != a_spec.link_bandwidth_bytes_per_s) {
      out += ", bandwidth_bytes_per_s: ";
      AppendInt(out, l.bandwidth_bytes_per_s);
    }
    if (l.latency_ns != a_spec.link_latency_ns) {
      out += ", latency_ns: ";
      AppendInt(out, l.latency_ns);
    }
    if (l.down) out += ", down: true";
    out += "}\n";
  }
  return out;
}

}  // namespace lockstep::topology
