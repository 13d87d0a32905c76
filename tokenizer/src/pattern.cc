#include "pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <vector>

#include "lockstep/common/error.h"
#include "unicode.h"

namespace lockstep::tokenizer {

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

namespace {

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
char Upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

}  // namespace

std::string TranslatePattern(std::string_view p, const std::string& where) {
  std::string out;
  out.reserve(p.size() + 16);
  std::vector<bool> fold_stack;  // the fold state to restore at each ')'
  bool fold = false;
  bool in_class = false;
  size_t class_start = 0;  // out.size() where the class's members begin
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += "\\p{White_Space}";
      } else if (e == 'S') {
        out += "\\P{White_Space}";
      } else if ((e == 'p' || e == 'P' || e == 'x') && i + 1 < p.size() && p[i + 1] == '{') {
        const size_t close = p.find('}', i);
        if (close == std::string_view::npos) {
          throw InvalidInput(where + ": unterminated \\" + e + "{ in regex '" + std::string(p) +
                             "'");
        }
        out += '\\';
        out.append(p.substr(i, close - i + 1));
        i = close;
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (in_class) {
      if (c == ']' && out.size() > class_start) {
        in_class = false;
        out += c;
      } else if (fold && IsAsciiLetter(c)) {
        if (i + 1 < p.size() && p[i + 1] == '-') {
          throw InvalidInput(where + ": a letter range inside a case-insensitive group in regex '" +
                             std::string(p) + "' is not supported");
        }
        out += Lower(c);
        out += Upper(c);
      } else {
        out += c;
      }
      continue;
    }
    switch (c) {
      case '[':
        in_class = true;
        out += c;
        if (i + 1 < p.size() && p[i + 1] == '^') {
          out += '^';
          ++i;
        }
        class_start = out.size();
        break;
      case '(':
        fold_stack.push_back(fold);
        if (p.substr(i, 4) == "(?i:") {
          out += "(?:";
          fold = true;
          i += 3;
        } else {
          out += c;
        }
        break;
      case ')':
        if (!fold_stack.empty()) {
          fold = fold_stack.back();
          fold_stack.pop_back();
        }
        out += c;
        break;
      default:
        if (fold && IsAsciiLetter(c)) {
          out += '[';
          out += Lower(c);
          out += Upper(c);
          out += ']';
        } else {
          out += c;
        }
    }
  }
  return out;
}

namespace {

std::unique_ptr<Regex::Code> Compile(const std::string& pcre_pattern, const std::string& where,
                                     std::string_view original, uint32_t extra_options) {
  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(context, PCRE2_NEWLINE_LF);
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre_pattern.data()), pcre_pattern.size(),
                    // A literal takes no Unicode property option.
                    (extra_options & PCRE2_LITERAL) != 0 ? PCRE2_UTF | extra_options
                                                         : PCRE2_UTF | PCRE2_UCP | extra_options,
                    &error, &offset, context);
  pcre2_compile_context_free(context);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    throw InvalidInput(where + ": regex '" + std::string(original) + "' does not compile (" +
                       reinterpret_cast<const char*>(message) + " at offset " +
                       std::to_string(offset) + ")");
  }
  auto result = std::make_unique<Regex::Code>();
  result->code = code;
  result->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return result;
}

}  // namespace

Regex::Regex(std::unique_ptr<Code> code) : code_(std::move(code)) {}

Regex::Regex(std::string_view pattern, const std::string& where)
    : code_(Compile(TranslatePattern(pattern, where), where, pattern, 0)) {}

Regex Regex::Literal(std::string_view text, const std::string& where) {
  return Regex(Compile(std::string(text), where, text, PCRE2_LITERAL));
}

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

Regex::Scratch::Scratch(const Regex& regex)
    : data(pcre2_match_data_create_from_pattern(regex.code_->code, nullptr)) {}

Regex::Scratch::~Scratch() { pcre2_match_data_free(static_cast<pcre2_match_data*>(data)); }

bool Regex::Find(Scratch& scratch, std::string_view text, size_t start, size_t& begin,
                 size_t& end) const {
  auto* md = static_cast<pcre2_match_data*>(scratch.data);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  // The text was validated as UTF-8 once, before any search.
  const int rc =
      code_->jit
          ? pcre2_jit_match(code_->code, subject, text.size(), start, 0, md, nullptr)
          : pcre2_match(code_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof(message));
    throw Error(ErrorCode::kInvalidInput,
                std::string("regex match failed: ") + reinterpret_cast<const char*>(message));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(md);
  begin = ovector[0];
  end = ovector[1];
  return true;
}

size_t Regex::NextChar(std::string_view text, size_t i) {
  return i >= text.size() ? text.size() + 1 : i + Utf8Length(static_cast<unsigned char>(text[i]));
}

std::string Regex::ReplaceAll(std::string_view text, std::string_view content) const {
  std::string out;
  size_t last = 0;
  ForEachMatch(text, [&](size_t begin, size_t end) {
    out.append(text.substr(last, begin - last));
    out.append(content);
    last = end;
  });
  out.append(text.substr(last));
  return out;
}

}  // namespace lockstep::tokenizer
