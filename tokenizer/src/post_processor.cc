// Post-processors: TemplateProcessing (BOS/EOS around the sequence), ByteLevel (nothing to do on
// ids), Sequence.
#include "lockstep/common/error.h"
#include "pipeline.h"

namespace lockstep::tokenizer {
namespace {

using nlohmann::json;

constexpr const char* kSupportedPostProcessors = "TemplateProcessing, ByteLevel, Sequence";

class Template : public PostProcessor {
 public:
  // Each item is either a special token's ids or the sequence itself (nullopt).
  explicit Template(std::vector<std::optional<std::vector<TokenId>>> items)
      : items_(std::move(items)) {}
  void Process(std::vector<TokenId>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    std::vector<TokenId> out;
    out.reserve(ids.size() + 4);
    for (const auto& item : items_) {
      if (item) {
        out.insert(out.end(), item->begin(), item->end());
      } else {
        out.insert(out.end(), ids.begin(), ids.end());
      }
    }
    ids = std::move(out);
  }

 private:
  std::vector<std::optional<std::vector<TokenId>>> items_;
};

class Nothing : public PostProcessor {
 public:
  void Process(std::vector<TokenId>&, bool) const override {}
};

class Sequence : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void Process(std::vector<TokenId>& ids, bool add_special_tokens) const override {
    for (const auto& p : parts_) p->Process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

std::unique_ptr<PostProcessor> MakeTemplate(const json& j, const std::string& where) {
  if (!j.contains("single") || !j["single"].is_array()) {
    throw InvalidInput(where + ".single: missing or not an array");
  }
  const json specials = j.value("special_tokens", json::object());
  std::vector<std::optional<std::vector<TokenId>>> items;
  for (size_t i = 0; i < j["single"].size(); ++i) {
    const json& item = j["single"][i];
    const std::string at = where + ".single[" + std::to_string(i) + "]";
    if (item.contains("Sequence")) {
      const std::string id = item["Sequence"].value("id", std::string());
      if (id != "A") {
        throw InvalidInput(at + ": a single-sequence template may only hold sequence A, not '" +
                           id + "'");
      }
      items.push_back(std::nullopt);
    } else if (item.contains("SpecialToken")) {
      const std::string name = item["SpecialToken"].value("id", std::string());
      if (!specials.contains(name) || !specials[name].contains("ids") ||
          !specials[name]["ids"].is_array()) {
        throw InvalidInput(at + ": special token '" + name + "' is not in " + where +
                           ".special_tokens");
      }
      std::vector<TokenId> ids;
      for (const json& id : specials[name]["ids"]) {
        if (!id.is_number_integer()) {
          throw InvalidInput(where + ".special_tokens." + name + ".ids: not integers");
        }
        ids.push_back(id.get<TokenId>());
      }
      items.push_back(std::move(ids));
    } else {
      throw InvalidInput(at + ": neither a Sequence nor a SpecialToken");
    }
  }
  return std::make_unique<Template>(std::move(items));
}

}  // namespace

std::unique_ptr<PostProcessor> MakePostProcessor(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw InvalidInput(where + ": must be null or an object with a \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "TemplateProcessing") return MakeTemplate(j, where);
  if (type == "ByteLevel") return std::make_unique<Nothing>();
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array()) {
      throw InvalidInput(where + ".processors: missing or not an array");
    }
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      auto part =
          MakePostProcessor(j["processors"][i], where + ".processors[" + std::to_string(i) + "]");
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw InvalidInput(where + ".type: unsupported post_processor '" + type +
                     "' (supported: " + kSupportedPostProcessors + ")");
}

}  // namespace lockstep::tokenizer
