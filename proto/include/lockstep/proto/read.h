// Reading one flat Cap'n Proto message that came from outside (a file, a peer): the one reader
// every codec of the project uses (control/src/codec.cc, partition/src/plan_capnp.cc,
// schedule/src/schedule_capnp.cc). It refuses bytes that are not whole words; reads an aligned
// buffer in place and copies an unaligned one into words; bounds the reader's traversal by the
// message's own size (so a hostile message of a few pointers cannot make a decoder walk
// gigabytes); and turns every kj::Exception — thrown while opening the message or lazily while
// `decode` walks it — into the caller's error, made by `fail` from a one-line description.
// Errors `decode` throws itself pass through unchanged.
//
// Header-only; include it from a .cc that links lockstep::proto (wire types stay behind the codec
// of the library that owns them). Thread-safe: no state.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace lockstep::proto {

struct ReadLimits {
  // The traversal limit, in words: factor x the message's words + floor. A decoder that reads
  // every field once needs about 1x; fields read twice need more.
  uint64_t traversal_factor = 2;
  uint64_t traversal_floor = 1024;
};

// `text` on one line (a kj description may span several).
inline std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

// decode(reader.getRoot<Root>()) on `bytes`; `fail(why)` returns the exception to throw (why:
// "N bytes is not a whole Cap'n Proto message" or the reader's description).
template <typename Root, typename Fail, typename Decode>
auto ReadMessage(std::span<const std::byte> bytes, const Fail& fail, const Decode& decode,
                 ReadLimits limits = {}) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    throw fail(std::to_string(bytes.size()) +
               " bytes is not a whole Cap'n Proto message (a non-empty multiple of 8 bytes)");
  }
  const size_t count = bytes.size() / sizeof(capnp::word);
  kj::Array<capnp::word> copy;
  kj::ArrayPtr<const capnp::word> words;
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) == 0) {
    words = kj::arrayPtr(reinterpret_cast<const capnp::word*>(bytes.data()), count);
  } else {
    copy = kj::heapArray<capnp::word>(count);
    std::memcpy(copy.begin(), bytes.data(), bytes.size());
    words = copy;
  }
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = count * limits.traversal_factor + limits.traversal_floor;
    capnp::FlatArrayMessageReader reader(words, options);
    return decode(reader.getRoot<Root>());
  } catch (const kj::Exception& e) {
    throw fail(OneLine(e.getDescription().cStr()));
  }
}

// The same for bytes held as characters (a file read whole).
template <typename Root, typename Fail, typename Decode>
auto ReadMessage(std::string_view bytes, const Fail& fail, const Decode& decode,
                 ReadLimits limits = {}) {
  return ReadMessage<Root>(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()),
      fail, decode, limits);
}

}  // namespace lockstep::proto
