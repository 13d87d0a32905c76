#include "run_inputs.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "lockstep/common/error.h"

namespace lockstep::cli {

void CheckOutputFile(const std::string& path, const std::string& flag) {
  const std::filesystem::path p(path);
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw UsageError(flag + " " + path + ": folder " + dir.string() +
                     " does not exist (create it, or write the file elsewhere)");
  }
  if (std::filesystem::is_directory(p, ec)) {
    throw UsageError(flag + " " + path + ": is a folder, not a file name");
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    throw UsageError(flag + " " + path + ": folder " + dir.string() + " is not writable");
  }
}

std::vector<int32_t> ModelEosIds(const std::string& config) {
  std::error_code ec;
  const std::filesystem::path folder = std::filesystem::is_directory(config, ec)
                                           ? std::filesystem::path(config)
                                           : std::filesystem::path(config).parent_path();
  const std::filesystem::path config_file = std::filesystem::is_directory(config, ec)
                                                ? folder / "config.json"
                                                : std::filesystem::path(config);
  std::vector<int32_t> ids;
  for (const std::filesystem::path& file : {config_file, folder / "generation_config.json"}) {
    std::ifstream in(file);
    if (!in) continue;
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("eos_token_id")) continue;
    const nlohmann::json& e = j["eos_token_id"];
    for (const nlohmann::json& id : e.is_array() ? e : nlohmann::json::array({e})) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        throw InvalidInput(file.string() + ": eos_token_id must be a token id or a list of them");
      }
      if (std::find(ids.begin(), ids.end(), id.get<int32_t>()) == ids.end()) {
        ids.push_back(id.get<int32_t>());
      }
    }
  }
  return ids;
}

transport::LinkChecksums ParseChecksumsFlag(const std::string& value) {
  try {
    return transport::ParseLinkChecksums(value);
  } catch (const Error&) {
    throw UsageError("--link-checksums must be auto, on or off, got '" + value + "'");
  }
}

}  // namespace lockstep::cli
