#include "lockstep/common/dtype.h"

namespace lockstep {

int DtypeBytes(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFp32:
      return 4;
    case Dtype::kFp16:
    case Dtype::kBf16:
      return 2;
    case Dtype::kInt8:
    case Dtype::kFp8:
      return 1;
  }
  return 0;
}

std::string_view DtypeName(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFp32:
      return "fp32";
    case Dtype::kFp16:
      return "fp16";
    case Dtype::kBf16:
      return "bf16";
    case Dtype::kInt8:
      return "int8";
    case Dtype::kFp8:
      return "fp8";
  }
  return "?";
}

std::optional<Dtype> ParseDtype(std::string_view name) {
  for (Dtype d : kAllDtypes) {
    if (DtypeName(d) == name) return d;
  }
  return std::nullopt;
}

}  // namespace lockstep
