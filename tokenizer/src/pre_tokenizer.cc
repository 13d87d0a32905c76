// Pre-tokenizers: Split (the Llama 3 / Qwen regexes), ByteLevel, Metaspace, Sequence.
#include "lockstep/common/error.h"
#include "pattern.h"
#include "pipeline.h"

namespace lockstep::tokenizer {
namespace {

using nlohmann::json;

constexpr const char* kSupportedPreTokenizers = "Sequence, Split, ByteLevel, Metaspace";

// GPT-2's split pattern, as the byte-level pre-tokenizer applies it when use_regex is true. The
// reference writes it with JavaScript's \s (which has U+FEFF and lacks U+0085); so does this.
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}"
    "\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}\\p{L}\\p{N}]+|"
    "[\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}"
    "\\x{3000}\\x{feff}]+(?![^\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}"
    "\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}])|[\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}"
    "\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}]+";

// kKeepMatches: invert with Removed (the gaps are removed, the matches kept).
enum class Behavior {
  kIsolated,
  kRemoved,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous,
  kKeepMatches
};

// Splits `text` at the matches of `regex` as tokenizers' SplitDelimiterBehavior says.
void SplitBy(const Regex& regex, Behavior behavior, std::string_view text,
             std::vector<std::string>& out) {
  struct Span {
    size_t begin, end;
    bool match;
  };
  std::vector<Span> spans;
  size_t last = 0;
  regex.ForEachMatch(text, [&](size_t begin, size_t end) {
    if (begin > last) spans.push_back({last, begin, false});
    spans.push_back({begin, end, true});
    last = end;
  });
  if (last < text.size()) spans.push_back({last, text.size(), false});
  auto piece = [&](size_t b, size_t e) { out.emplace_back(text.substr(b, e - b)); };
  switch (behavior) {
    case Behavior::kIsolated:
      for (const Span& s : spans) piece(s.begin, s.end);
      break;
    case Behavior::kRemoved:
    case Behavior::kKeepMatches:
      for (const Span& s : spans) {
        if (s.match == (behavior == Behavior::kKeepMatches)) piece(s.begin, s.end);
      }
      break;
    case Behavior::kMergedWithPrevious: {
      // A match joins the piece before it.
      size_t start = 0;
      for (size_t i = 0; i < spans.size(); ++i) {
        const bool next_is_match = i + 1 < spans.size() && spans[i + 1].match;
        if (!spans[i].match && next_is_match) continue;
        piece(spans[start].begin, spans[i].end);
        start = i + 1;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      // A match joins the piece after it.
      size_t start = 0;
      for (size_t i = 0; i < spans.size(); ++i) {
        if (spans[i].match && i + 1 < spans.size() && !spans[i + 1].match) continue;
        piece(spans[start].begin, spans[i].end);
        start = i + 1;
      }
      break;
    }
    case Behavior::kContiguous: {
      // Adjacent matches join into one piece.
      size_t start = 0;
      for (size_t i = 0; i < spans.size(); ++i) {
        if (spans[i].match && i + 1 < spans.size() && spans[i + 1].match) continue;
        piece(spans[start].begin, spans[i].end);
        start = i + 1;
      }
      break;
    }
  }
}

class Split : public PreTokenizer {
 public:
  Split(std::unique_ptr<Regex> regex, Behavior behavior)
      : regex_(std::move(regex)), behavior_(behavior) {}
  void PreTokenize(std::vector<std::string>& pieces, const PreTokenizeContext&) const override {
    std::vector<std::string> out;
    out.reserve(pieces.size() * 4);
    for (const std::string& p : pieces) SplitBy(*regex_, behavior_, p, out);
    pieces = std::move(out);
  }

 private:
  std::unique_ptr<Regex> regex_;
  Behavior behavior_;
};

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? std::make_unique<Regex>(kGpt2Pattern, "ByteLevel pattern") : nullptr) {}
  void PreTokenize(std::vector<std::string>& pieces, const PreTokenizeContext&) const override {
    if (add_prefix_space_) {
      for (std::string& p : pieces) {
        if (p.empty() || p[0] != ' ') p.insert(p.begin(), ' ');
      }
    }
    if (regex_) {
      std::vector<std::string> out;
      for (const std::string& p : pieces) {
        regex_->ForEachMatch(p, [&](size_t b, size_t e) { out.emplace_back(p.substr(b, e - b)); });
      }
      pieces = std::move(out);
    }
    // The mapping of bytes to stand-in characters is the model's business (it works on bytes).
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  Metaspace(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)),
        prepend_(prepend),
        split_(split ? std::make_unique<Regex>(Regex::Literal(replacement_, "Metaspace"))
                     : nullptr) {}
  void PreTokenize(std::vector<std::string>& pieces,
                   const PreTokenizeContext& context) const override {
    std::vector<std::string> out;
    for (std::string& p : pieces) {
      std::string s;
      s.reserve(p.size() + replacement_.size());
      for (char c : p) {
        if (c == ' ') {
          s += replacement_;
        } else {
          s += c;
        }
      }
      const bool starts = s.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::kAlways ||
                      (prepend_ == Prepend::kFirst && context.section_index == 0))) {
        s.insert(0, replacement_);
      }
      if (split_) {
        SplitBy(*split_, Behavior::kMergedWithNext, s, out);
      } else {
        out.push_back(std::move(s));
      }
    }
    pieces = std::move(out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  std::unique_ptr<Regex> split_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void PreTokenize(std::vector<std::string>& pieces,
                   const PreTokenizeContext& context) const override {
    for (const auto& p : parts_) p->PreTokenize(pieces, context);
  }
  bool byte_level() const override {
    for (const auto& p : parts_) {
      if (p->byte_level()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

Behavior ParseBehavior(const json& j, const std::string& where) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  throw InvalidInput(where + ".behavior: '" + b +
                     "' is not one of Isolated, Removed, MergedWithPrevious, MergedWithNext, "
                     "Contiguous");
}

}  // namespace

std::unique_ptr<PreTokenizer> MakePreTokenizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw InvalidInput(where + ": must be null or an object with a \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      throw InvalidInput(where + ".pretokenizers: missing or not an array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      auto part = MakePreTokenizer(j["pretokenizers"][i],
                                   where + ".pretokenizers[" + std::to_string(i) + "]");
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  if (type == "Split") {
    if (!j.contains("pattern")) throw InvalidInput(where + ".pattern: missing");
    const Behavior behavior = ParseBehavior(j.value("behavior", json()), where);
    if (j.value("invert", false) && behavior != Behavior::kRemoved) {
      // Hugging Face and its JavaScript port disagree on what invert does with other behaviors.
      throw InvalidInput(where + ".invert: true is supported only with behavior Removed");
    }
    return std::make_unique<Split>(MakePattern(j["pattern"], where + ".pattern"),
                                   j.value("invert", false) ? Behavior::kKeepMatches : behavior);
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(j.value("add_prefix_space", false),
                                       j.value("use_regex", true));
  }
  if (type == "Metaspace") {
    const std::string replacement = j.value("replacement", std::string("\u2581"));
    Metaspace::Prepend prepend = Metaspace::Prepend::kAlways;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      const std::string s = j["prepend_scheme"].get<std::string>();
      if (s == "always") {
        prepend = Metaspace::Prepend::kAlways;
      } else if (s == "first") {
        prepend = Metaspace::Prepend::kFirst;
      } else if (s == "never") {
        prepend = Metaspace::Prepend::kNever;
      } else {
        throw InvalidInput(where + ".prepend_scheme: '" + s +
                           "' is not one of always, first, never");
      }
    } else if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean()) {
      prepend = j["add_prefix_space"].get<bool>() ? Metaspace::Prepend::kAlways
                                                  : Metaspace::Prepend::kNever;
    }
    return std::make_unique<Metaspace>(replacement, prepend, j.value("split", true));
  }
  throw InvalidInput(where + ".type: unsupported pre_tokenizer '" + type +
                     "' (supported: " + kSupportedPreTokenizers + ")");
}

}  // namespace lockstep::tokenizer
