// Reading hosts files (format: hosts_file.h, topology/HOSTS.md).
#include "lockstep/topology/hosts_file.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <sstream>

#include "lockstep/common/error.h"
#include "yaml_tree.h"

namespace lockstep::topology {
namespace {

using internal::YamlNode;

constexpr std::array<std::string_view, 8> kHostFields = {
    "name", "address", "cores", "numa_nodes", "ssh_user", "ssh_port", "tcp_base_port", "hostname"};

std::string Valid() {
  std::string out;
  for (std::string_view f : kHostFields) out += (out.empty() ? "" : ", ") + std::string(f);
  return out;
}

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void Fail(int line, const std::string& field, const std::string& what) const {
    throw InvalidInput(source_ + ":" + std::to_string(line) + ": " + field + ": " + what);
  }

  std::string Text(const YamlNode& n, const std::string& field) const {
    if (!n.is_scalar() || n.text.empty()) {
      Fail(n.line, field,
           "expected a non-empty text, got " + std::string(internal::KindName(n.kind)));
    }
    return n.text;
  }

  int Int(const YamlNode& n, const std::string& field, int64_t lo, int64_t hi) const {
    const std::string range =
        " (valid: an integer " + std::to_string(lo) + ".." + std::to_string(hi) + ")";
    if (!n.is_scalar()) {
      Fail(n.line, field,
           "expected an integer, got " + std::string(internal::KindName(n.kind)) + range);
    }
    int64_t v = 0;
    size_t used = 0;
    try {
      v = std::stoll(n.text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != n.text.size()) Fail(n.line, field, "'" + n.text + "' is not" + range);
    if (v < lo || v > hi) Fail(n.line, field, std::to_string(v) + " is out of range" + range);
    return static_cast<int>(v);
  }

  HostEntry Host(const YamlNode& n, size_t index) const {
    const std::string where = "hosts[" + std::to_string(index) + "]";
    if (!n.is_map()) {
      Fail(n.line, where,
           "expected a mapping with name, address, cores; got " +
               std::string(internal::KindName(n.kind)));
    }
    HostEntry h;
    h.line = n.line;
    std::map<std::string, int> seen;
    for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
      const YamlNode& key = n.items[i];
      const YamlNode& value = n.items[i + 1];
      const std::string field = where + "." + key.text;
      if (std::find(kHostFields.begin(), kHostFields.end(), key.text) == kHostFields.end()) {
        Fail(key.line, field, "unknown field (valid: " + Valid() + ")");
      }
      if (!seen.emplace(key.text, key.line).second) Fail(key.line, field, "given twice");
      if (key.text == "name") h.name = Text(value, field);
      if (key.text == "address") h.address = Text(value, field);
      if (key.text == "hostname") h.hostname = Text(value, field);
      if (key.text == "ssh_user") h.ssh_user = Text(value, field);
      if (key.text == "cores") h.cores = Int(value, field, 1, 1 << 20);
      if (key.text == "numa_nodes") h.numa_nodes = Int(value, field, 1, 1024);
      if (key.text == "ssh_port") h.ssh_port = Int(value, field, 1, 65535);
      if (key.text == "tcp_base_port") h.tcp_base_port = Int(value, field, 1024, 65535);
    }
    for (std::string_view required : {"name", "address", "cores"}) {
      if (!seen.count(std::string(required))) {
        Fail(n.line, where + "." + std::string(required),
             "missing (every host needs name, "
             "address and cores)");
      }
    }
    if (h.numa_nodes > h.cores) {
      Fail(seen["numa_nodes"], where + ".numa_nodes",
           std::to_string(h.numa_nodes) + " NUMA domains for " + std::to_string(h.cores) +
               " cores (valid: 1.." + std::to_string(h.cores) + ")");
    }
    return h;
  }

  HostsFile Read(const YamlNode& root) const {
    if (!root.is_map()) {
      Fail(root.line, "hosts",
           "expected a mapping with a 'hosts' list, got " +
               std::string(internal::KindName(root.kind)));
    }
    HostsFile file;
    file.source = source_;
    const YamlNode* hosts = nullptr;
    for (size_t i = 0; i + 1 < root.items.size(); i += 2) {
      if (root.items[i].text != "hosts") {
        Fail(root.items[i].line, root.items[i].text, "unknown field (valid: hosts)");
      }
      if (hosts != nullptr) Fail(root.items[i].line, "hosts", "given twice");
      hosts = &root.items[i + 1];
    }
    if (hosts == nullptr) Fail(root.line, "hosts", "missing (a list of hosts)");
    if (!hosts->is_sequence() || hosts->items.empty()) {
      Fail(hosts->line, "hosts",
           "expected a non-empty list of hosts, got " +
               std::string(internal::KindName(hosts->kind)));
    }
    std::map<std::string, int> names;
    for (size_t i = 0; i < hosts->items.size(); ++i) {
      HostEntry h = Host(hosts->items[i], i);
      if (auto [it, fresh] = names.emplace(h.name, h.line); !fresh) {
        Fail(h.line, "hosts[" + std::to_string(i) + "].name",
             "'" + h.name + "' is already the name of the host at line " +
                 std::to_string(it->second) + " (names must be unique)");
      }
      file.hosts.push_back(std::move(h));
    }
    return file;
  }

 private:
  std::string source_;
};

}  // namespace

HostsFile ParseHostsFile(std::string_view text, const std::string& source) {
  return Reader(source).Read(internal::ParseYamlTree(text, source));
}

HostsFile ReadHostsFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot read hosts file '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  return ParseHostsFile(text.str(), path);
}

bool IsLocalAddress(const std::string& address, const std::string& this_hostname) {
  return address == "127.0.0.1" || address == "::1" || address == "localhost" ||
         (!this_hostname.empty() && address == this_hostname);
}

}  // namespace lockstep::topology
