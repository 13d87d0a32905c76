#include "lockstep/common/memory.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace lockstep {
namespace {

#if !defined(__SANITIZE_ADDRESS__)
// With the policy on, a 1 MiB block freed and allocated again is the same heap memory: it is
// not unmapped on free (the default would hand blocks above 128 KiB straight back with munmap),
// so the rewrite touches no fresh pages.
TEST(KeepFreedMemory, AOneMibBlockFreedStaysInTheHeap) {
  ASSERT_TRUE(KeepFreedMemory());
  const size_t before = mallinfo2().hblkhd;  // bytes in mmap'd blocks
  void* block = std::malloc(1 << 20);
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, 1 << 20);
  EXPECT_EQ(mallinfo2().hblkhd, before) << "the 1 MiB block was served by mmap";
  std::free(block);
}
#endif

}  // namespace
}  // namespace lockstep
