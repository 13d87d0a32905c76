#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/coordinator/deployment.h"

namespace lockstep::coordinator {

int64_t CriticalHops(const Deployment& d) {
  using schedule::InstrKind;
  using Node = std::pair<size_t, size_t>;                       // (chip of d.chips, instruction)
  std::map<std::pair<topology::LinkId, int64_t>, Node> sender;  // (link, msg) -> its sender
  for (size_t c = 0; c < d.chips.size(); ++c) {
    const auto& code = d.chips[c].program.instructions;
    for (size_t i = 0; i < code.size(); ++i) {
      const schedule::Instruction& in = code[i];
      if ((in.kind == InstrKind::kSend || in.kind == InstrKind::kForward) && in.msg >= 0) {
        sender[{in.link, in.msg}] = {c, i};
      }
    }
  }
  constexpr int64_t kUnknown = -1, kOpen = -2;
  std::vector<std::vector<int64_t>> hops(d.chips.size());
  for (size_t c = 0; c < d.chips.size(); ++c) {
    hops[c].assign(d.chips[c].program.instructions.size(), kUnknown);
  }
  auto at = [&](Node n) -> int64_t& { return hops[n.first][n.second]; };
  auto incoming = [&](Node n) -> const Node* {
    const schedule::Instruction& in = d.chips[n.first].program.instructions[n.second];
    if ((in.kind != InstrKind::kRecv && in.kind != InstrKind::kForward) || in.in_msg < 0) {
      return nullptr;
    }
    auto it = sender.find({in.in_link, in.in_msg});
    if (it == sender.end()) {
      throw Error(ErrorCode::kInternal, "chip " + std::to_string(d.chips[n.first].chip) +
                                            " receives message " + std::to_string(in.in_msg) +
                                            " on link " + std::to_string(in.in_link) +
                                            ", which no program sends");
    }
    return &it->second;
  };
  int64_t longest = 0;
  std::vector<Node> stack;
  for (size_t c = 0; c < d.chips.size(); ++c) {
    for (size_t i = 0; i < hops[c].size(); ++i) {
      stack.push_back({c, i});
      // Depth first without recursion: a node is opened (its unknown inputs pushed above it)
      // and closed when it is on top again with every input known.
      while (!stack.empty()) {
        const Node n = stack.back();
        if (at(n) >= 0) {
          stack.pop_back();
          continue;
        }
        const schedule::Instruction& in = d.chips[n.first].program.instructions[n.second];
        std::vector<Node> inputs;
        for (int32_t dep : in.deps) inputs.push_back({n.first, static_cast<size_t>(dep)});
        const Node* from = incoming(n);
        if (from != nullptr) inputs.push_back(*from);
        bool ready = true;
        for (const Node& m : inputs) {
          if (at(m) == kOpen) {
            throw Error(ErrorCode::kInternal, "the schedule's messages form a cycle through chip " +
                                                  std::to_string(d.chips[m.first].chip));
          }
          if (at(m) == kUnknown) ready = false;
        }
        if (!ready) {
          at(n) = kOpen;
          for (const Node& m : inputs) {
            if (at(m) == kUnknown) stack.push_back(m);
          }
          continue;
        }
        int64_t h = 0;
        for (int32_t dep : in.deps) h = std::max(h, hops[n.first][static_cast<size_t>(dep)]);
        if (from != nullptr) h = std::max(h, at(*from) + 1);
        at(n) = h;
        longest = std::max(longest, h);
        stack.pop_back();
      }
    }
  }
  return longest;
}

}  // namespace lockstep::coordinator
