// `lockstep run --transport sim|inproc|ipc|tcp`: the distributed path of `lockstep run`
// (run_distributed.cc). run_command.cc hands the whole command line over when --transport is
// given.
#pragma once

#include <string>
#include <vector>

#include "command.h"

namespace lockstep::cli {

// True when `args` ask for a transport (--transport X or --transport=X).
bool WantsDistributed(const std::vector<std::string>& args);

int RunDistributed(const std::vector<std::string>& args, Context& ctx);

}  // namespace lockstep::cli
