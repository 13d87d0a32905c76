#include "lockstep/transport/message.h"

#include <gtest/gtest.h>

namespace lockstep::transport {
namespace {

TEST(Message, NamesLinksAndEnds) {
  LinkSpec l;
  l.a = {3, 7};
  l.b = {12, 7};
  EXPECT_EQ(LinkName(l), "link chip 3:7 <-> chip 12:7");
  EXPECT_EQ(ToString(PortRef{0, 15}), "chip 0:15");
}

TEST(Payload, OwnsMovesAndReleasesItsBytes) {
  Payload zero(16);
  EXPECT_EQ(zero.size(), 16u);
  for (std::byte b : zero.bytes()) EXPECT_EQ(b, std::byte{0});

  Payload raw = Payload::Uninitialized(1 << 20);
  ASSERT_EQ(raw.size(), size_t{1} << 20);
  raw.mutable_bytes()[12345] = std::byte{7};
  std::byte* data = raw.data();
  Payload moved = std::move(raw);
  EXPECT_EQ(moved.data(), data);  // moving hands over the buffer, no copy
  EXPECT_EQ(moved.bytes()[12345], std::byte{7});

  auto owner = moved.Release();
  EXPECT_NE(owner, nullptr);
  EXPECT_EQ(moved.size(), 0u);
  EXPECT_EQ(moved.data(), nullptr);
}

TEST(Payload, AdoptedMemoryIsFreedThroughItsOwner) {
  struct Flag : Payload::Owner {
    explicit Flag(bool* f) : freed(f) {}
    ~Flag() override { *freed = true; }
    bool* freed;
  };
  bool freed = false;
  std::byte buf[8] = {};
  {
    Payload p(buf, sizeof buf, std::make_unique<Flag>(&freed));
    EXPECT_EQ(p.size(), 8u);
    EXPECT_FALSE(freed);
  }
  EXPECT_TRUE(freed);
}

}  // namespace
}  // namespace lockstep::transport
