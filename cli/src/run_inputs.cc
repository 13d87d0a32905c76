#include "run_inputs.h"

#include <unistd.h>

#include <filesystem>

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

transport::LinkChecksums ParseChecksumsFlag(const std::string& value) {
  try {
    return transport::ParseLinkChecksums(value);
  } catch (const Error&) {
    throw UsageError("--link-checksums must be auto, on or off, got '" + value + "'");
  }
}

}  // namespace lockstep::cli
