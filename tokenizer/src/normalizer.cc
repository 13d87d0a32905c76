// Normalizers: NFC/NFD/NFKC/NFKD, Prepend, Replace, Strip, Sequence (what Llama 2, Mistral,
// TinyLlama and Qwen use).
#include "lockstep/common/error.h"
#include "pattern.h"
#include "pipeline.h"
#include "unicode.h"

namespace lockstep::tokenizer {
namespace {

using nlohmann::json;

constexpr const char* kSupportedNormalizers =
    "Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip";

class Unicode : public Normalizer {
 public:
  explicit Unicode(NormalForm form) : form_(form) {}
  std::string Normalize(std::string text) const override {
    return tokenizer::Normalize(text, form_);
  }

 private:
  NormalForm form_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string Normalize(std::string text) const override { return prefix_ + text; }

 private:
  std::string prefix_;
};

class Replace : public Normalizer {
 public:
  Replace(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string Normalize(std::string text) const override {
    return pattern_->ReplaceAll(text, content_);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string Normalize(std::string text) const override {
    std::string_view v = text;
    if (left_) v = TrimStartJs(v);
    if (right_) v = TrimEndJs(v);
    return std::string(v);
  }

 private:
  bool left_, right_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string Normalize(std::string text) const override {
    for (const auto& p : parts_) text = p->Normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

std::string StringField(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string()) {
    throw InvalidInput(where + "." + key + ": missing or not a string");
  }
  return j[key].get<std::string>();
}

}  // namespace

std::unique_ptr<Regex> MakePattern(const json& j, const std::string& where) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    return std::make_unique<Regex>(Regex::Literal(j["String"].get<std::string>(), where));
  }
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    return std::make_unique<Regex>(j["Regex"].get<std::string>(), where);
  }
  throw InvalidInput(where + ": a pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

std::unique_ptr<Normalizer> MakeNormalizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw InvalidInput(where + ": must be null or an object with a \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      throw InvalidInput(where + ".normalizers: missing or not an array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      auto part =
          MakeNormalizer(j["normalizers"][i], where + ".normalizers[" + std::to_string(i) + "]");
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  if (type == "NFC") return std::make_unique<Unicode>(NormalForm::kNfc);
  if (type == "NFD") return std::make_unique<Unicode>(NormalForm::kNfd);
  if (type == "NFKC") return std::make_unique<Unicode>(NormalForm::kNfkc);
  if (type == "NFKD") return std::make_unique<Unicode>(NormalForm::kNfkd);
  if (type == "Prepend") return std::make_unique<Prepend>(StringField(j, "prepend", where));
  if (type == "Replace") {
    if (!j.contains("pattern")) throw InvalidInput(where + ".pattern: missing");
    return std::make_unique<Replace>(MakePattern(j["pattern"], where + ".pattern"),
                                     StringField(j, "content", where));
  }
  if (type == "Strip") {
    return std::make_unique<Strip>(j.value("strip_left", false), j.value("strip_right", false));
  }
  throw InvalidInput(where + ".type: unsupported normalizer '" + type +
                     "' (supported: " + kSupportedNormalizers + ")");
}

}  // namespace lockstep::tokenizer
