// A compiled Unicode regular expression (PCRE2 with JIT) for the patterns in tokenizer.json.
//
// Hugging Face writes its split patterns for Oniguruma; the reference implementation
// (@huggingface/tokenizers) rewrites them for JavaScript. TranslatePattern makes the same choices
// for PCRE2 so that both match the same pieces: \s and \S are the Unicode White_Space property
// (Oniguruma's, not JavaScript's), and (?i:...) folds ASCII letters only. Immutable after
// construction; Find may be called from many threads at once (each call has its own match data).
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace lockstep::tokenizer {

// The PCRE2 form of a tokenizer.json regex; throws InvalidInput naming `where` for a construct it
// does not support (a case-folded range inside a class).
std::string TranslatePattern(std::string_view pattern, const std::string& where);

class Regex {
 public:
  // `pattern` in tokenizer.json's dialect (translated here); `where` names it in errors.
  Regex(std::string_view pattern, const std::string& where);
  // A literal string (tokenizer.json's {"String": ...} patterns).
  static Regex Literal(std::string_view text, const std::string& where);
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // Calls on_match(begin, end) for every non-overlapping, non-empty match in `text` (valid
  // UTF-8), left to right.
  template <typename F>
  void ForEachMatch(std::string_view text, F&& on_match) const {
    Scratch scratch(*this);
    size_t start = 0;
    size_t begin = 0, end = 0;
    while (Find(scratch, text, start, begin, end)) {
      if (end > begin) on_match(begin, end);
      start = end > begin ? end : NextChar(text, begin);
      if (start > text.size()) break;
    }
  }
  // Replaces every match with `content` (JavaScript replaceAll).
  std::string ReplaceAll(std::string_view text, std::string_view content) const;

  struct Code;  // the compiled PCRE2 pattern (regex.cc)

 private:
  // One search's PCRE2 match data (not shared between threads).
  class Scratch {
   public:
    explicit Scratch(const Regex& regex);
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    void* data;
  };
  explicit Regex(std::unique_ptr<Code> code);
  bool Find(Scratch& scratch, std::string_view text, size_t start, size_t& begin,
            size_t& end) const;
  static size_t NextChar(std::string_view text, size_t i);
  std::unique_ptr<Code> code_;
};

}  // namespace lockstep::tokenizer
