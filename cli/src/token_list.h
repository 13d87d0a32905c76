// Prompts as users type them: comma-separated token ids ("1,2,3") on the command line, or a
// prompts file with one such list per line ('#' starts a comment line, blank lines are skipped).
// Shared by `lockstep run` (in one process and distributed) and `lockstep-coordinator`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lockstep::cli {

// The ids of `text`; UsageError naming `where` (e.g. "--prompt", "FILE:3") and the bad item for
// anything but integers in [0, 2^31) separated by commas, or for an empty list.
std::vector<int32_t> ParseTokenList(const std::string& text, const std::string& where);

// Every prompt of a prompts file; Error (kNotFound) when it cannot be opened, kInvalidInput when
// it holds no prompt, UsageError naming FILE:LINE for a bad line.
std::vector<std::vector<int32_t>> ReadPromptsFile(const std::string& path);

}  // namespace lockstep::cli
