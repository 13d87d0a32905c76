#include "lockstep/common/error.h"

namespace lockstep {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidInput:
      return "invalid_input";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kCannotFit:
      return "cannot_fit";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kDisconnected:
      return "disconnected";
    case ErrorCode::kProtocol:
      return "protocol";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

}  // namespace lockstep
