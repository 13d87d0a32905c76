// `lockstep topo ...`: generate, inspect, validate and route topologies; describe this host.
#include "command.h"

namespace lockstep::cli {

CommandGroup TopoCommand() {
  return {"topo", "generate, show, validate and route chip topologies; describe this host",
          [](const std::vector<std::string>& args, Context& ctx) {
            std::vector<Subcommand> subs = {TopoGenerateSubcommand(), TopoShowSubcommand(),
                                            TopoValidateSubcommand(), TopoRouteSubcommand(),
                                            TopoHostSubcommand()};
            return DispatchSubcommand(
                "topo",
                "Generate, show, validate and route chip topologies (chips, nodes, racks, links),\n"
                "and describe this host's cores for pinning simulated chips.",
                subs, args, ctx);
          }};
}

}  // namespace lockstep::cli
