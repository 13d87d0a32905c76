#include "pin_map.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "lockstep/common/error.h"

namespace lockstep::launch {
namespace {

// "0-3,8" for the sorted CPUs.
std::string Ranges(const std::set<int>& cpus) {
  std::string out;
  for (auto it = cpus.begin(); it != cpus.end();) {
    const int first = *it;
    int last = first;
    while (++it != cpus.end() && *it == last + 1) ++last;
    out += (out.empty() ? "" : ",") + std::to_string(first) +
           (last > first ? "-" + std::to_string(last) : "");
  }
  return out;
}

}  // namespace

std::map<int32_t, std::vector<int>> ReadPinMap(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, "pin map " + path + ": cannot open the file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput("pin map " + path + ": not JSON (" + e.what() +
                       "); write one with lockstep topo host --map TOPOLOGY --json");
  }
  if (!j.is_object() || !j.contains("placements") || !j["placements"].is_array()) {
    throw InvalidInput("pin map " + path +
                       ": no \"placements\" array (as lockstep topo host --map TOPOLOGY --json "
                       "prints)");
  }
  std::map<int32_t, std::vector<int>> map;
  for (size_t i = 0; i < j["placements"].size(); ++i) {
    const nlohmann::json& p = j["placements"][i];
    const std::string where = "pin map " + path + ": placements[" + std::to_string(i) + "]";
    std::vector<int> pus;
    int32_t chip = -1;
    try {
      chip = p.at("chip").get<int32_t>();
      pus = p.at("pus").get<std::vector<int>>();
    } catch (const nlohmann::json::exception&) {
      throw InvalidInput(where + ": wants {\"chip\": N, \"pus\": [CPU, ...]}");
    }
    if (chip < 0) throw InvalidInput(where + ": chip " + std::to_string(chip) + " is negative");
    if (pus.empty()) throw InvalidInput(where + ": chip " + std::to_string(chip) + " has no pus");
    for (int pu : pus) {
      if (pu < 0) throw InvalidInput(where + ": CPU " + std::to_string(pu) + " is negative");
    }
    if (!map.emplace(chip, pus).second) {
      throw InvalidInput(where + ": chip " + std::to_string(chip) + " is pinned twice");
    }
  }
  return map;
}

void ApplyPinMap(const std::map<int32_t, std::vector<int>>& map, const std::string& path,
                 const topology::HostSummary& host, coordinator::Deployment& deployment) {
  std::set<int> usable;
  for (const topology::NumaDomain& d : host.numa) {
    for (const topology::HostCore& c : d.cores) usable.insert(c.pus.begin(), c.pus.end());
  }
  for (coordinator::ChipDeployment& c : deployment.chips) {
    auto it = map.find(static_cast<int32_t>(c.chip));
    if (it == map.end()) {
      throw InvalidInput("pin map " + path + ": chip " + std::to_string(c.chip) +
                         ", which the run uses, has no entry");
    }
    for (int pu : it->second) {
      if (usable.count(pu) == 0) {
        throw InvalidInput("pin map " + path + ": chip " + std::to_string(c.chip) +
                           " is pinned to CPU " + std::to_string(pu) +
                           ", which this host cannot run on (usable CPUs: " + Ranges(usable) +
                           "); make the map for this host: lockstep topo host --map TOPOLOGY "
                           "--json");
      }
    }
    c.cpus = it->second;
  }
}

}  // namespace lockstep::launch
