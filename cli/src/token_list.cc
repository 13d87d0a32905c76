#include "token_list.h"

#include <fstream>
#include <sstream>

#include "command.h"
#include "lockstep/common/error.h"

namespace lockstep::cli {

std::vector<int32_t> ParseTokenList(const std::string& text, const std::string& where) {
  std::vector<int32_t> tokens;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX) {
      throw UsageError(where + ": '" + item +
                       "' is not a token id (want comma-separated integers >= 0, e.g. 1,2,3)");
    }
    tokens.push_back(static_cast<int32_t>(v));
  }
  if (tokens.empty()) throw UsageError(where + ": needs at least one token id, e.g. 1,2,3");
  return tokens;
}

std::vector<std::vector<int32_t>> ReadPromptsFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, "--prompts " + path + ": cannot open the file");
  std::vector<std::vector<int32_t>> prompts;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    prompts.push_back(ParseTokenList(line, path + ":" + std::to_string(number)));
  }
  if (prompts.empty()) throw InvalidInput("--prompts " + path + ": no prompt lines");
  return prompts;
}

}  // namespace lockstep::cli
