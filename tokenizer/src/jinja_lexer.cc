// The chat-template lexer: trim_blocks / lstrip_blocks as transformers sets them, whitespace
// control, and the tokens of statements and expressions.
#include <algorithm>

#include "jinja.h"
#include "lockstep/common/error.h"
#include "unicode.h"

namespace lockstep::tokenizer::jinja {
namespace {

// The template after the environment's whitespace rules, each byte remembering where it came
// from (errors name the original line and column).
struct Prepared {
  std::string text;
  std::vector<size_t> origin;
  size_t Origin(size_t i) const {
    return i < origin.size() ? origin[i] : origin.empty() ? 0 : origin.back() + 1;
  }
};

bool LineStart(const std::string& s, size_t i) {
  if (i == 0) return true;
  const char c = s[i - 1];
  if (c == '\n' || c == '\r') return true;
  // U+2028 / U+2029 end lines too.
  return i >= 3 && static_cast<unsigned char>(s[i - 3]) == 0xE2 &&
         static_cast<unsigned char>(s[i - 2]) == 0x80 &&
         (static_cast<unsigned char>(s[i - 1]) == 0xA8 ||
          static_cast<unsigned char>(s[i - 1]) == 0xA9);
}

Prepared Prepare(std::string_view source) {
  Prepared p;
  p.text.assign(source);
  p.origin.resize(source.size());
  for (size_t i = 0; i < source.size(); ++i) p.origin[i] = i;
  auto erase = [&p](size_t from, size_t n) {
    p.text.erase(from, n);
    p.origin.erase(p.origin.begin() + static_cast<ptrdiff_t>(from),
                   p.origin.begin() + static_cast<ptrdiff_t>(from + n));
  };
  // A single trailing newline is not part of the output (Jinja's keep_trailing_newline=False).
  if (!p.text.empty() && p.text.back() == '\n') erase(p.text.size() - 1, 1);
  // lstrip_blocks: spaces and tabs from the start of a line to a block or comment tag.
  for (size_t i = 0; i < p.text.size(); ++i) {
    if (!LineStart(p.text, i)) continue;
    size_t j = i;
    while (j < p.text.size() && (p.text[j] == ' ' || p.text[j] == '\t')) ++j;
    if (j > i && j + 1 < p.text.size() && p.text[j] == '{' &&
        (p.text[j + 1] == '%' || p.text[j + 1] == '#' || p.text[j + 1] == '-')) {
      erase(i, j - i);
    }
  }
  // trim_blocks: the first newline after a block or comment tag.
  for (size_t i = 0; i + 2 < p.text.size(); ++i) {
    const char c = p.text[i];
    if ((c == '%' || c == '#' || c == '-') && p.text[i + 1] == '}' && p.text[i + 2] == '\n') {
      erase(i + 2, 1);
      ++i;
    }
  }
  return p;
}

bool IsWord(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  Lexer(const Program& program) : program_(program), p_(Prepare(program.source)), s_(p_.text) {}

  std::vector<Token> Run() {
    while (i_ < s_.size()) {
      const TokenKind* last = tokens_.empty() ? nullptr : &tokens_.back().kind;
      if (last == nullptr || *last == TokenKind::kCloseStatement ||
          *last == TokenKind::kCloseExpression || *last == TokenKind::kComment) {
        size_t end = i_;
        while (true) {
          end = s_.find('{', end);
          if (end == std::string::npos) {
            end = s_.size();
            break;
          }
          if (end + 1 < s_.size() &&
              (s_[end + 1] == '%' || s_[end + 1] == '{' || s_[end + 1] == '#')) {
            break;
          }
          ++end;
        }
        if (end > i_) {
          Push(TokenKind::kText, s_.substr(i_, end - i_), i_);
          i_ = end;
          continue;
        }
      }
      if (s_[i_] == '{' && i_ + 1 < s_.size()) {
        const char next = s_[i_ + 1];
        if (next == '#') {
          LexComment();
          continue;
        }
        if (i_ + 2 < s_.size() && s_[i_ + 2] == '-' && (next == '%' || next == '{')) {
          StripTrailingWhitespace();
          Push(next == '%' ? TokenKind::kOpenStatement : TokenKind::kOpenExpression,
               next == '%' ? "{%" : "{{", i_);
          if (next == '{') brace_depth_ = 0;
          i_ += 3;
          continue;
        }
      }
      SkipWhitespace();
      if (i_ >= s_.size()) Fail(s_.size(), "the template ends inside a tag");
      const char c = s_[i_];
      if (c == '-' && i_ + 2 < s_.size() && s_[i_ + 2] == '}' &&
          (s_[i_ + 1] == '%' || s_[i_ + 1] == '}')) {
        Push(s_[i_ + 1] == '%' ? TokenKind::kCloseStatement : TokenKind::kCloseExpression,
             s_[i_ + 1] == '%' ? "%}" : "}}", i_);
        i_ += 3;
        SkipWhitespace();
        continue;
      }
      if ((c == '-' || c == '+') && LexSign()) continue;
      if (LexPunctuation()) continue;
      if (c == '\'' || c == '"') {
        LexString(c);
        continue;
      }
      if (IsDigit(c)) {
        const size_t start = i_;
        while (i_ < s_.size() && IsDigit(s_[i_])) ++i_;
        if (tokens_.empty() || tokens_.back().kind != TokenKind::kDot) {
          if (i_ + 1 < s_.size() && s_[i_] == '.' && IsDigit(s_[i_ + 1])) {
            ++i_;
            while (i_ < s_.size() && IsDigit(s_[i_])) ++i_;
          }
        }
        Push(TokenKind::kNumber, s_.substr(start, i_ - start), start);
        continue;
      }
      if (IsWord(c)) {
        const size_t start = i_;
        while (i_ < s_.size() && IsWord(s_[i_])) ++i_;
        Push(TokenKind::kName, s_.substr(start, i_ - start), start);
        continue;
      }
      Fail(i_, std::string("unexpected character '") + std::string(1, c) + "'");
    }
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void Fail(size_t i, const std::string& what) const {
    throw InvalidInput(program_.Locate(p_.Origin(i)) + ": " + what);
  }
  void Push(TokenKind kind, std::string text, size_t at) {
    tokens_.push_back(Token{kind, std::move(text), p_.Origin(at)});
  }
  void SkipWhitespace() {
    while (i_ < s_.size()) {
      size_t next = i_;
      const char32_t cp = NextCodePoint(s_, next);
      if (!IsJsWhitespace(cp)) break;
      i_ = next;
    }
  }
  void StripTrailingWhitespace() {
    if (tokens_.empty() || tokens_.back().kind != TokenKind::kText) return;
    std::string& text = tokens_.back().text;
    text = std::string(TrimEndJs(text));
    if (text.empty()) tokens_.pop_back();
  }
  void LexComment() {
    i_ += 2;
    const bool strip_before = i_ < s_.size() && s_[i_] == '-';
    if (strip_before) ++i_;
    const size_t end = s_.find("#}", i_);
    if (end == std::string::npos) Fail(i_, "a comment {# is never closed with #}");
    const bool strip_after = end > i_ && s_[end - 1] == '-';
    if (strip_before) StripTrailingWhitespace();
    Push(TokenKind::kComment, "", i_);
    i_ = end + 2;
    if (strip_after) SkipWhitespace();
  }
  // A sign: part of a binary operator after an operand, else a unary operator or a signed number.
  bool LexSign() {
    const char c = s_[i_];
    if (tokens_.empty() || tokens_.back().kind == TokenKind::kText) {
      Fail(i_, std::string("unexpected character '") + c + "'");
    }
    switch (tokens_.back().kind) {
      case TokenKind::kName:
      case TokenKind::kNumber:
      case TokenKind::kString:
      case TokenKind::kCloseParen:
      case TokenKind::kCloseBracket:
        return false;  // binary
      default:
        break;
    }
    const size_t start = i_++;
    std::string num;
    while (i_ < s_.size() && IsDigit(s_[i_])) num += s_[i_++];
    if (!num.empty() && i_ + 1 < s_.size() && s_[i_] == '.' && IsDigit(s_[i_ + 1])) {
      num += s_[i_++];
      while (i_ < s_.size() && IsDigit(s_[i_])) num += s_[i_++];
    }
    Push(num.empty() ? TokenKind::kUnary : TokenKind::kNumber, std::string(1, c) + num, start);
    return true;
  }
  bool LexPunctuation() {
    struct Rule {
      const char* text;
      TokenKind kind;
    };
    static const Rule kRules[] = {
        {"{%", TokenKind::kOpenStatement},  {"%}", TokenKind::kCloseStatement},
        {"{{", TokenKind::kOpenExpression}, {"}}", TokenKind::kCloseExpression},
        {"(", TokenKind::kOpenParen},       {")", TokenKind::kCloseParen},
        {"{", TokenKind::kOpenBrace},       {"}", TokenKind::kCloseBrace},
        {"[", TokenKind::kOpenBracket},     {"]", TokenKind::kCloseBracket},
        {",", TokenKind::kComma},           {".", TokenKind::kDot},
        {":", TokenKind::kColon},           {"|", TokenKind::kPipe},
        {"<=", TokenKind::kComparison},     {">=", TokenKind::kComparison},
        {"==", TokenKind::kComparison},     {"!=", TokenKind::kComparison},
        {"<", TokenKind::kComparison},      {">", TokenKind::kComparison},
        {"+", TokenKind::kAdditive},        {"-", TokenKind::kAdditive},
        {"~", TokenKind::kAdditive},        {"**", TokenKind::kPower},
        {"*", TokenKind::kMultiplicative},  {"//", TokenKind::kMultiplicative},
        {"/", TokenKind::kMultiplicative},  {"%", TokenKind::kMultiplicative},
        {"=", TokenKind::kEquals},
    };
    for (const Rule& rule : kRules) {
      const std::string_view text(rule.text);
      // Inside a dict literal "}}" closes two braces, not the expression.
      if (text == "}}" && brace_depth_ > 0) continue;
      if (s_.compare(i_, text.size(), text) != 0) continue;
      Push(rule.kind, std::string(text), i_);
      if (rule.kind == TokenKind::kOpenExpression) brace_depth_ = 0;
      if (rule.kind == TokenKind::kOpenBrace) ++brace_depth_;
      if (rule.kind == TokenKind::kCloseBrace) --brace_depth_;
      i_ += text.size();
      return true;
    }
    return false;
  }
  void LexString(char quote) {
    const size_t start = i_++;
    std::string value;
    while (true) {
      if (i_ >= s_.size()) Fail(start, "a string is never closed");
      const char c = s_[i_];
      if (c == quote) break;
      ++i_;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (i_ >= s_.size()) Fail(start, "a string is never closed");
      const char e = s_[i_++];
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'v':
          value += '\v';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case '\\':
          value += '\\';
          break;
        case 'x':
        case 'u': {
          const size_t n = e == 'x' ? 2 : 4;
          if (i_ + n > s_.size())
            Fail(i_ - 2,
                 "a \\" + std::string(1, e) + " escape needs " + std::to_string(n) + " hex digits");
          const std::string hex = s_.substr(i_, n);
          if (!std::all_of(hex.begin(), hex.end(),
                           [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); })) {
            Fail(i_ - 2,
                 "a \\" + std::string(1, e) + " escape needs " + std::to_string(n) + " hex digits");
          }
          const auto cp = static_cast<char32_t>(std::stoul(hex, nullptr, 16));
          if (cp >= 0xD800 && cp < 0xE000)
            Fail(i_ - 2, "a \\u escape of a surrogate is not supported");
          AppendUtf8(value, cp);
          i_ += n;
          break;
        }
        default:
          Fail(i_ - 2, std::string("unsupported escape \\") + e + " in a string");
      }
    }
    ++i_;  // the closing quote
    Push(TokenKind::kString, std::move(value), start);
  }

  const Program& program_;
  Prepared p_;
  const std::string& s_;
  size_t i_ = 0;
  int brace_depth_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

std::string Program::Locate(size_t pos) const {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < pos && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(source[i]) & 0xC0) != 0x80) {
      ++column;
    }
  }
  return where + ":" + std::to_string(line) + ":" + std::to_string(column);
}

std::vector<Token> Lex(const Program& program) { return Lexer(program).Run(); }

}  // namespace lockstep::tokenizer::jinja
