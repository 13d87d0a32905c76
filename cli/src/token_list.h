// Prompts as users type them: comma-separated token ids ("1,2,3") on the command line, or a
// prompts file with one such list per line. The rule lives in the launch library
// (launch/inputs.h), which the lockstep-coordinator daemon shares; a bad list is a
// launch::ConfigError, a usage error (exit 2) like cli::UsageError.
#pragma once

#include "lockstep/launch/inputs.h"

namespace lockstep::cli {

using launch::ParseTokenList;
using launch::ReadPromptsFile;

}  // namespace lockstep::cli
