// The inputs of a distributed run are loaded by the launch library (launch/inputs.h), the same way
// for `lockstep run --transport` and `lockstep-coordinator`; `lockstep run` in one process checks
// its output file here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/launch/inputs.h"
#include "lockstep/transport/transport.h"

namespace lockstep::cli {

using launch::LoadRunInputs;
using launch::RunInputArgs;
using launch::RunInputs;

// An output file the run writes at its end (`flag` names the option, e.g. --dump-logits): its
// folder must exist and be writable, checked before anything starts so a long run's results are
// not lost to a typo. Throws UsageError naming the flag, the path and what is wrong.
void CheckOutputFile(const std::string& path, const std::string& flag);

// The model's own end-of-sequence ids: eos_token_id (a number or a list) of config.json and of
// generation_config.json beside it (Llama 3 Instruct ends turns with <|eot_id|> there).
// `config`: the --model argument (a folder or its config.json). InvalidInput naming the file for
// an eos_token_id that is not a token id or a list of them.
std::vector<int32_t> ModelEosIds(const std::string& config);

// --link-checksums auto|on|off (run --transport, deploy); UsageError naming the flag otherwise.
transport::LinkChecksums ParseChecksumsFlag(const std::string& value);

}  // namespace lockstep::cli
