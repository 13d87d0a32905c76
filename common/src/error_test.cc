#include "lockstep/common/error.h"

#include <gtest/gtest.h>

namespace lockstep {
namespace {

TEST(Error, CarriesCodeAndMessage) {
  try {
    throw Error(ErrorCode::kCannotFit, "model needs 140 GB, topology has 16 GB");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCannotFit);
    EXPECT_STREQ(e.what(), "model needs 140 GB, topology has 16 GB");
  }
}

TEST(Error, CodeNamesAreStableAndDistinct) {
  EXPECT_EQ(ErrorCodeName(ErrorCode::kInvalidInput), "invalid_input");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kProtocol), "protocol");
  EXPECT_NE(ErrorCodeName(ErrorCode::kUnavailable), ErrorCodeName(ErrorCode::kDisconnected));
}

TEST(Error, InvalidInputShorthand) {
  Error e = InvalidInput("bad");
  EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
}

}  // namespace
}  // namespace lockstep
