// UTF-8 helpers the tokenizer needs, matching the reference (JavaScript) semantics where they
// differ from other conventions: what counts as whitespace for trimming, how invalid bytes decode.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lockstep::tokenizer {

// The offset of the first byte that does not start or continue a valid UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF are invalid), or nullopt.
std::optional<size_t> FindInvalidUtf8(std::string_view s);

// Decodes one code point at s[i] (s valid UTF-8); advances i.
char32_t NextCodePoint(std::string_view s, size_t& i);
// The byte length of the UTF-8 sequence starting with lead byte `b` (1 for a stray byte).
inline size_t Utf8Length(unsigned char b) {
  return b < 0x80 ? 1 : b < 0xE0 ? (b >= 0xC0 ? 2 : 1) : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 1;
}
void AppendUtf8(std::string& out, char32_t cp);

// Bytes to UTF-8 text as the WHATWG decoder (TextDecoder, Rust's from_utf8_lossy) does: each
// maximal invalid subpart becomes one U+FFFD.
std::string DecodeUtf8Lossy(std::string_view bytes);

// JavaScript's String.prototype.trim notion of whitespace (WhiteSpace + LineTerminator).
bool IsJsWhitespace(char32_t cp);
std::string_view TrimStartJs(std::string_view s);
std::string_view TrimEndJs(std::string_view s);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
// Unicode normalization (utf8proc); `s` must be valid UTF-8.
std::string Normalize(std::string_view s, NormalForm form);

// GPT-2's byte-level alphabet: every byte has a printable stand-in character.
const std::string& ByteToUnicode(uint8_t byte);  // the stand-in, UTF-8 encoded
// The byte a stand-in code point represents, or -1.
int UnicodeToByte(char32_t cp);

}  // namespace lockstep::tokenizer
