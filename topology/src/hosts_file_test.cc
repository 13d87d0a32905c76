#include "lockstep/topology/hosts_file.h"

#include <gtest/gtest.h>

#include "lockstep/common/error.h"

namespace lockstep::topology {
namespace {

std::string ErrorOf(const std::string& text) {
  try {
    ParseHostsFile(text, "h.yaml");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    return e.what();
  }
  return "no error";
}

TEST(HostsFile, ReadsEveryField) {
  const HostsFile f = ParseHostsFile(
      "hosts:\n"
      "  - name: a\n"
      "    address: 10.0.0.1\n"
      "    cores: 16\n"
      "    numa_nodes: 2\n"
      "    ssh_user: ops\n"
      "    ssh_port: 2222\n"
      "    tcp_base_port: 30000\n"
      "    hostname: a.cluster\n"
      "  - {name: b, address: localhost, cores: 4}\n",
      "h.yaml");
  EXPECT_EQ(f.source, "h.yaml");
  ASSERT_EQ(f.hosts.size(), 2u);
  const HostEntry& a = f.hosts[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.address, "10.0.0.1");
  EXPECT_EQ(a.cores, 16);
  EXPECT_EQ(a.numa_nodes, 2);
  EXPECT_EQ(a.ssh_user, "ops");
  EXPECT_EQ(a.ssh_port, 2222);
  EXPECT_EQ(a.tcp_base_port, 30000);
  EXPECT_EQ(a.reported_name(), "a.cluster");
  EXPECT_EQ(a.line, 2);
  const HostEntry& b = f.hosts[1];
  EXPECT_EQ(b.numa_nodes, 1);
  EXPECT_EQ(b.ssh_port, 22);
  EXPECT_EQ(b.tcp_base_port, 0);
  EXPECT_EQ(b.reported_name(), "b");
  EXPECT_EQ(b.line, 10);
}

TEST(HostsFile, ErrorsNameFileLineAndField) {
  EXPECT_EQ(ErrorOf("hosts:\n  - name: a\n    address: x\n    cores: many\n"),
            "h.yaml:4: hosts[0].cores: 'many' is not (valid: an integer 1..1048576)");
  EXPECT_EQ(ErrorOf("hosts:\n  - name: a\n    address: x\n"),
            "h.yaml:2: hosts[0].cores: missing (every host needs name, address and cores)");
  EXPECT_EQ(ErrorOf("hosts:\n  - {name: a, address: x, cores: 2, port: 3}\n"),
            "h.yaml:2: hosts[0].port: unknown field (valid: name, address, cores, numa_nodes, "
            "ssh_user, ssh_port, tcp_base_port, hostname)");
  EXPECT_EQ(ErrorOf("hosts:\n  - {name: a, address: x, cores: 2}\n"
                    "  - {name: a, address: y, cores: 2}\n"),
            "h.yaml:3: hosts[1].name: 'a' is already the name of the host at line 2 (names "
            "must be unique)");
  EXPECT_EQ(ErrorOf("hosts:\n  - {name: a, address: x, cores: 2, numa_nodes: 3}\n"),
            "h.yaml:2: hosts[0].numa_nodes: 3 NUMA domains for 2 cores (valid: 1..2)");
  EXPECT_EQ(ErrorOf("hosts:\n  - {name: a, address: x, cores: 2, ssh_port: 0}\n"),
            "h.yaml:2: hosts[0].ssh_port: 0 is out of range (valid: an integer 1..65535)");
  EXPECT_EQ(ErrorOf("hosts: []\n"),
            "h.yaml:1: hosts: expected a non-empty list of hosts, got a list");
  EXPECT_EQ(ErrorOf("machines: []\n"), "h.yaml:1: machines: unknown field (valid: hosts)");
  EXPECT_NE(ErrorOf("hosts: [\n").find("h.yaml:"), std::string::npos);
}

TEST(HostsFile, MissingFileIsNotFound) {
  try {
    ReadHostsFile("/nonexistent/hosts.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/hosts.yaml"), std::string::npos);
  }
}

TEST(HostsFile, LocalAddresses) {
  EXPECT_TRUE(IsLocalAddress("127.0.0.1", "box"));
  EXPECT_TRUE(IsLocalAddress("localhost", "box"));
  EXPECT_TRUE(IsLocalAddress("box", "box"));
  EXPECT_FALSE(IsLocalAddress("127.0.0.2", "box"));
  EXPECT_FALSE(IsLocalAddress("10.0.0.2", "box"));
}

}  // namespace
}  // namespace lockstep::topology
