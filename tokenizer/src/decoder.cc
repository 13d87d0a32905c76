// Decoders: ByteLevel, ByteFallback, Metaspace, Replace, Fuse, Strip, Sequence (what the Llama,
// Mistral and Qwen families use), each as the reference applies it to the list of token strings.
#include "lockstep/common/error.h"
#include "pattern.h"
#include "pipeline.h"
#include "unicode.h"

namespace lockstep::tokenizer {
namespace {

using nlohmann::json;

constexpr const char* kSupportedDecoders =
    "Sequence, ByteLevel, ByteFallback, Metaspace, Replace, Fuse, Strip";

class ByteLevel : public Decoder {
 public:
  std::vector<DecodeToken> DecodeChain(std::vector<DecodeToken> tokens) const override {
    std::vector<DecodeToken> out;
    std::string bytes;
    bool pending = false;
    auto flush = [&] {
      if (pending) out.push_back({DecodeUtf8Lossy(bytes), false});
      bytes.clear();
      pending = false;
    };
    for (DecodeToken& t : tokens) {
      if (t.added) {
        flush();
        out.push_back(std::move(t));
        continue;
      }
      pending = true;
      size_t i = 0;
      while (i < t.text.size()) {
        const size_t start = i;
        const int b = UnicodeToByte(NextCodePoint(t.text, i));
        if (b >= 0) {
          bytes += static_cast<char>(b);
        } else {
          bytes.append(t.text, start, i - start);  // not a stand-in: keep the character
        }
      }
    }
    flush();
    return out;
  }
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class ByteFallback : public Decoder {
 public:
  std::vector<DecodeToken> DecodeChain(std::vector<DecodeToken> tokens) const override {
    std::vector<DecodeToken> out;
    std::string bytes;
    for (DecodeToken& t : tokens) {
      // "<0xHH>": six characters (the reference parses the two after "<0x" as hex).
      int byte = -1;
      if (t.text.size() == 6 && t.text.compare(0, 3, "<0x") == 0 && t.text[5] == '>') {
        const int hi = HexDigit(t.text[3]);
        const int lo = HexDigit(t.text[4]);
        if (hi >= 0) byte = lo >= 0 ? hi * 16 + lo : hi;
      }
      if (byte >= 0) {
        bytes += static_cast<char>(byte);
        continue;
      }
      if (!bytes.empty()) {
        out.push_back({DecodeUtf8Lossy(bytes), false});
        bytes.clear();
      }
      out.push_back(std::move(t));
    }
    if (!bytes.empty()) out.push_back({DecodeUtf8Lossy(bytes), false});
    return out;
  }
};

// Replaces every occurrence of `from` by `to` (plain strings).
std::string ReplaceString(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  size_t last = 0;
  for (size_t pos = text.find(from); pos != std::string_view::npos && !from.empty();
       pos = text.find(from, last)) {
    out.append(text.substr(last, pos - last));
    out.append(to);
    last = pos + from.size();
  }
  out.append(text.substr(last));
  return out;
}

class Metaspace : public Decoder {
 public:
  explicit Metaspace(std::string replacement) : replacement_(std::move(replacement)) {}
  std::vector<DecodeToken> DecodeChain(std::vector<DecodeToken> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string s = ReplaceString(tokens[i].text, replacement_, " ");
      if (i == 0 && !s.empty() && s[0] == ' ') s.erase(0, 1);
      tokens[i].text = std::move(s);
    }
    return tokens;
  }

 private:
  std::string replacement_;
};

class Replace : public Decoder {
 public:
  Replace(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<DecodeToken> DecodeChain(std::vector<DecodeToken> tokens) const override {
    for (DecodeToken& t : tokens) t.text = pattern_->ReplaceAll(t.text, content_);
    return tokens;
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class Fuse : public Decoder {
 public:
  std::vector<DecodeToken> DecodeChain(std::vector<DecodeToken> tokens) const override {
    std::string all;
    for (const DecodeToken& t : tokens) all += t.text;
    return {{std::move(all), false}};
  }
};

class Strip : public Decoder {
 public:
  Strip(char32_t content, int start, int stop) : content_(content), start_(start), stop_(stop) {}
  std::vector<DecodeToken> DecodeChain(std::vector<DecodeToken> tokens) const override {
    for (DecodeToken& t : tokens) {
      std::vector<size_t> starts;  // byte offset of each character
      for (size_t i = 0; i < t.text.size();) {
        starts.push_back(i);
        NextCodePoint(t.text, i);
      }
      auto char_at = [&](size_t k) {
        size_t i = starts[k];
        return NextCodePoint(t.text, i);
      };
      size_t first = 0;
      for (int k = 0; k < start_ && static_cast<size_t>(k) < starts.size(); ++k) {
        if (char_at(k) != content_) break;
        first = k + 1;
      }
      size_t last = starts.size();  // characters kept: [first, last)
      for (int k = 0; k < stop_ && static_cast<size_t>(k) < starts.size(); ++k) {
        const size_t index = starts.size() - k - 1;
        if (char_at(index) != content_) break;
        last = index;
      }
      if (last <= first) {
        t.text.clear();
        continue;
      }
      const size_t b = first < starts.size() ? starts[first] : t.text.size();
      const size_t e = last < starts.size() ? starts[last] : t.text.size();
      t.text = t.text.substr(b, e - b);
    }
    return tokens;
  }

 private:
  char32_t content_;
  int start_, stop_;
};

class Sequence : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  std::vector<DecodeToken> DecodeChain(std::vector<DecodeToken> tokens) const override {
    for (const auto& p : parts_) tokens = p->DecodeChain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> MakeDecoder(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw InvalidInput(where + ": must be null or an object with a \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      throw InvalidInput(where + ".decoders: missing or not an array");
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      auto part = MakeDecoder(j["decoders"][i], where + ".decoders[" + std::to_string(i) + "]");
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Metaspace") {
    return std::make_unique<Metaspace>(j.value("replacement", std::string("\u2581")));
  }
  if (type == "Replace") {
    if (!j.contains("pattern")) throw InvalidInput(where + ".pattern: missing");
    return std::make_unique<Replace>(MakePattern(j["pattern"], where + ".pattern"),
                                     j.value("content", std::string()));
  }
  if (type == "Strip") {
    const std::string content = j.value("content", std::string(" "));
    size_t i = 0;
    const char32_t c = content.empty() ? U' ' : NextCodePoint(content, i);
    return std::make_unique<Strip>(c, j.value("start", 0), j.value("stop", 0));
  }
  throw InvalidInput(where + ".type: unsupported decoder '" + type +
                     "' (supported: " + kSupportedDecoders + ")");
}

}  // namespace lockstep::tokenizer
