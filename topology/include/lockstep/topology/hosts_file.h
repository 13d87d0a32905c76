// Hosts files: the machines a plan is deployed on (`lockstep deploy --hosts FILE`).
//
// A hosts file is YAML (format: topology/HOSTS.md): a list of hosts, each with a name, an address
// workers and links use, its core count, and optionally its NUMA domains, ssh user and port, the
// base of its tcp link ports and the hostname its workers report. The reader checks every field
// and names `file:line: field` and what would be valid on the first problem. It lives here,
// beside the topology files, because it shares their line-numbered YAML reader and describes the
// same thing one level down: where the chips of a Topology run.
//
// Pure values; the parse functions are thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lockstep::topology {

struct HostEntry {
  std::string name;      // unique in the file; how the mapping and errors name the host
  std::string address;   // IP or hostname: where its workers' links listen and ssh goes
  int cores = 0;         // cores its workers may use (one chip per core unless shared)
  int numa_nodes = 1;    // NUMA domains; the cores are split evenly, in order
  std::string ssh_user;  // empty: ssh's default (the current user)
  int ssh_port = 22;
  int tcp_base_port = 0;  // 0: unset (the run picks one); else the first link port
  // The hostname its workers report when they register (gethostname); empty: `name`.
  std::string hostname;
  int line = 0;  // where the entry starts in the file, for messages

  const std::string& reported_name() const { return hostname.empty() ? name : hostname; }
};

struct HostsFile {
  std::string source;            // the path (or the name given to ParseHostsFile)
  std::vector<HostEntry> hosts;  // in file order: the order neighbouring stages follow
};

// Parses the YAML text of a hosts file. Throws Error(kInvalidInput) "<source>:<line>: <field>:
// <problem> (<what is valid>)" on the first problem: YAML syntax, an unknown or missing field,
// a value of the wrong type or out of range, a repeated host name, no hosts at all.
HostsFile ParseHostsFile(std::string_view text, const std::string& source);

// Reads and parses a file; Error(kNotFound) naming the path if it cannot be read.
HostsFile ReadHostsFile(const std::string& path);

// True for the addresses that mean "this machine": 127.0.0.1, ::1, localhost and
// `this_hostname`. Workers of such hosts are started directly, the others over ssh. (Other
// loopback addresses, 127.0.0.2 and up, count as remote: tests use them as stand-in hosts.)
bool IsLocalAddress(const std::string& address, const std::string& this_hostname);

}  // namespace lockstep::topology
