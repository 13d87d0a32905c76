// `lockstep topo ...`: generate, inspect, validate and route topologies; describe this host.
#include "command.h"

namespace lockstep::cli {

CommandGroup TopoCommand() {
  return {"topo", "generate, show, validate and route chip topologies",
          [](const std::vector<std::string>& args, Context& ctx) {
            std::vector<Subcommand> subs = {TopoHostSubcommand()};
            return DispatchSubcommand("topo", "Generate, show, validate and route topologies.",
                                      subs, args, ctx);
          }};
}

}  // namespace lockstep::cli
