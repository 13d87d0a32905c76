// lockstep::Error — the one way a Lockstep library reports an expected failure.
//
// Every library throws `Error` for failures a caller can act on (a malformed file, an
// unreachable peer, a model that cannot fit) and uses assertions only for broken internal
// invariants. The `code` says what the caller should do about it (STYLE.md rule 6): fix the
// input, retry, reconnect, or give up because it can never fit. The message is one line that
// names the file / field / chip / link and what would be valid; the CLI prints it as is and maps
// the code to an exit status. Errors are values: copyable, thread-safe to read.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace lockstep {

enum class ErrorCode {
  kInvalidInput,  // the caller's input is wrong; fixing the input fixes it
  kNotFound,      // a named thing (file, chip, tensor) does not exist
  kCannotFit,     // valid input, but the resources can never satisfy it
  kUnavailable,   // a resource is temporarily missing (peer not up yet); retrying may help
  kDisconnected,  // a peer went away; reconnect or fail over
  kProtocol,      // a peer sent something that breaks the protocol (garbage, wrong step)
  kInternal,      // a bug in Lockstep; report it
};

// Stable lower-case name for logs and JSON ("invalid_input", ...).
std::string_view ErrorCodeName(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

// Shorthand for the most common kind.
inline Error InvalidInput(const std::string& message) {
  return Error(ErrorCode::kInvalidInput, message);
}

}  // namespace lockstep
