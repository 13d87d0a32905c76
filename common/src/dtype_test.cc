#include "lockstep/common/dtype.h"

#include <gtest/gtest.h>

namespace lockstep {
namespace {

TEST(Dtype, NamesRoundTripAndSizesMatchTheFormats) {
  for (Dtype d : kAllDtypes) {
    auto parsed = ParseDtype(DtypeName(d));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(DtypeBytes(Dtype::kFp32), 4);
  EXPECT_EQ(DtypeBytes(Dtype::kBf16), 2);
  EXPECT_EQ(DtypeBytes(Dtype::kFp8), 1);
  EXPECT_FALSE(ParseDtype("float32").has_value());
}

}  // namespace
}  // namespace lockstep
