// The inputs of a distributed run are loaded by the launch library (launch/inputs.h), the same way
// for `lockstep run --transport` and `lockstep-coordinator` (the model's EOS ids too); `lockstep
// run` in one process checks its output file here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/launch/inputs.h"
#include "lockstep/transport/transport.h"

namespace lockstep::cli {

using launch::LoadRunInputs;
using launch::ModelEosIds;
using launch::RunInputArgs;
using launch::RunInputs;

// An output file the run writes at its end (`flag` names the option, e.g. --dump-logits): its
// folder must exist and be writable, checked before anything starts so a long run's results are
// not lost to a typo. Throws UsageError naming the flag, the path and what is wrong.
void CheckOutputFile(const std::string& path, const std::string& flag);

// --link-checksums auto|on|off (run --transport, deploy); UsageError naming the flag otherwise.
transport::LinkChecksums ParseChecksumsFlag(const std::string& value);

}  // namespace lockstep::cli
