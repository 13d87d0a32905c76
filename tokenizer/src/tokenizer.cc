#include "lockstep/tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bpe.h"
#include "lockstep/common/error.h"
#include "lockstep/tokenizer/chat_template.h"
#include "pipeline.h"
#include "tokenizer_json.h"
#include "unicode.h"

namespace lockstep::tokenizer {
namespace {

using nlohmann::json;

struct AddedToken {
  std::string content;
  TokenId id = 0;
  bool lstrip = false;
  bool rstrip = false;
  bool special = false;
  bool normalized = false;
};

// Splits text at occurrences of a set of strings, taking the longest match at the leftmost
// position (the reference's DictionarySplitter), byte by byte.
class Splitter {
 public:
  void Add(const std::string& word) {
    if (word.empty()) return;
    int32_t node = 0;
    for (char c : word) {
      const auto b = static_cast<uint8_t>(c);
      int32_t child = -1;
      for (const auto& [byte, index] : nodes_[node].children) {
        if (byte == b) child = index;
      }
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(b, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[node].terminal = true;
    first_[static_cast<uint8_t>(word[0])] = true;
    empty_ = false;
  }
  // Appends the pieces of `text`: the words found and the text between them, in order.
  void Split(std::string_view text, std::vector<std::string>& out) const {
    if (empty_) {
      out.emplace_back(text);
      return;
    }
    size_t start = 0, i = 0;
    while (i < text.size()) {
      size_t match = 0;
      if (first_[static_cast<uint8_t>(text[i])]) {
        int32_t node = 0;
        for (size_t j = i; j < text.size(); ++j) {
          int32_t child = -1;
          for (const auto& [byte, index] : nodes_[node].children) {
            if (byte == static_cast<uint8_t>(text[j])) child = index;
          }
          if (child < 0) break;
          node = child;
          if (nodes_[node].terminal) match = j + 1 - i;
        }
      }
      if (match > 0) {
        if (i > start) out.emplace_back(text.substr(start, i - start));
        out.emplace_back(text.substr(i, match));
        i += match;
        start = i;
      } else {
        ++i;
      }
    }
    if (start < text.size()) out.emplace_back(text.substr(start));
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    bool terminal = false;
  };
  std::vector<Node> nodes_{Node{}};
  std::array<bool, 256> first_{};
  bool empty_ = true;
};

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, path.string() + ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A token named in tokenizer_config.json: "text" or {"content": "text", ...}.
std::optional<std::string> TokenString(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return std::nullopt;
}

TokenizerConfig ParseConfig(std::string_view text, const std::string& source) {
  TokenizerConfig config;
  if (text.empty()) return config;
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw InvalidInput(source + ": not a JSON object");
  }
  if (j.contains("bos_token")) config.bos_token = TokenString(j["bos_token"]);
  if (j.contains("eos_token")) config.eos_token = TokenString(j["eos_token"]);
  if (j.contains("unk_token")) config.unk_token = TokenString(j["unk_token"]);
  if (j.contains("pad_token")) config.pad_token = TokenString(j["pad_token"]);
  if (j.contains("chat_template")) {
    const json& t = j["chat_template"];
    if (t.is_string()) {
      config.chat_template = t.get<std::string>();
    } else if (t.is_array()) {
      // Named templates: take "default", else the first.
      for (const json& named : t) {
        if (named.is_object() && named.value("name", "") == "default" &&
            named.contains("template") && named["template"].is_string()) {
          config.chat_template = named["template"].get<std::string>();
        }
      }
      if (!config.chat_template && !t.empty() && t[0].is_object() && t[0].contains("template") &&
          t[0]["template"].is_string()) {
        config.chat_template = t[0]["template"].get<std::string>();
      }
    } else if (!t.is_null()) {
      throw InvalidInput(source + ": chat_template must be a string or a list of named templates");
    }
  }
  if (j.contains("clean_up_tokenization_spaces") &&
      j["clean_up_tokenization_spaces"].is_boolean()) {
    config.clean_up_tokenization_spaces = j["clean_up_tokenization_spaces"].get<bool>();
  }
  if (j.contains("additional_special_tokens") && j["additional_special_tokens"].is_array()) {
    for (const json& t : j["additional_special_tokens"]) {
      if (auto s = TokenString(t)) config.additional_special_tokens.push_back(*s);
    }
  }
  return config;
}

// The reference's clean_up_tokenization.
std::string CleanUp(std::string text) {
  static const std::array<std::pair<std::string_view, std::string_view>, 10> kRules = {{
      {" .", "."},
      {" ?", "?"},
      {" !", "!"},
      {" ,", ","},
      {" ' ", "'"},
      {" n't", "n't"},
      {" 'm", "'m"},
      {" 's", "'s"},
      {" 've", "'ve"},
      {" 're", "'re"},
  }};
  for (const auto& [from, to] : kRules) {
    std::string out;
    size_t last = 0;
    for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, last)) {
      out.append(text, last, pos - last);
      out.append(to);
      last = pos + from.size();
    }
    if (last == 0) continue;
    out.append(text, last);
    text = std::move(out);
  }
  return text;
}

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  std::string config_source;
  std::unique_ptr<Bpe> model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  std::vector<AddedToken> added;
  // Content (and normalized content) -> index into `added`. Lookups only.
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> added_by_content;
  Splitter unnormalized, normalized;
  std::vector<bool> is_added, is_special;  // per id
  // Model ids whose token an added token took over (the reference maps the string to the
  // added token's id); empty when none did.
  std::vector<std::pair<TokenId, TokenId>> remap;
  TokenizerConfig config;

  size_t longest_added = 0;  // bytes of the longest key of added_by_content

  const AddedToken* FindAdded(std::string_view s) const {
    if (s.size() > longest_added) return nullptr;  // most text: no hashing of a whole line
    auto it = added_by_content.find(s);
    return it == added_by_content.end() ? nullptr : &added[it->second];
  }

  // lstrip/rstrip of the added tokens among `sections` trim their neighbours.
  void StripAround(std::vector<std::string>& sections) const {
    for (size_t i = 0; i < sections.size(); ++i) {
      const AddedToken* t = FindAdded(sections[i]);
      if (t == nullptr) continue;
      if (t->lstrip && i > 0) sections[i - 1] = std::string(TrimEndJs(sections[i - 1]));
      if (t->rstrip && i + 1 < sections.size()) {
        sections[i + 1] = std::string(TrimStartJs(sections[i + 1]));
      }
    }
  }

  void EncodeSubsection(const std::string& text, int section_index, std::vector<TokenId>& out,
                        Bpe::Scratch& scratch, std::vector<std::string>& pieces) const {
    pieces.clear();
    pieces.push_back(text);
    if (pre_tokenizer) pre_tokenizer->PreTokenize(pieces, PreTokenizeContext{section_index});
    const size_t first = out.size();
    for (const std::string& p : pieces) model->Encode(p, out, scratch);
    if (!remap.empty()) {
      for (size_t k = first; k < out.size(); ++k) {
        for (const auto& [from, to] : remap) {
          if (out[k] == from) out[k] = to;
        }
      }
    }
    if (model->fuse_unk() && model->unk_id()) {
      const TokenId unk = *model->unk_id();
      size_t w = first;
      for (size_t k = first; k < out.size(); ++k) {
        if (out[k] == unk && w > first && out[w - 1] == unk) continue;
        out[w++] = out[k];
      }
      out.resize(w);
    }
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

bool Tokenizer::Exists(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path p(path);
  if (std::filesystem::is_directory(p, ec)) {
    return std::filesystem::is_regular_file(p / "tokenizer.json", ec);
  }
  return std::filesystem::is_regular_file(p, ec);
}

Tokenizer Tokenizer::Load(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p(path);
  std::filesystem::path folder;
  if (std::filesystem::is_directory(p, ec)) {
    folder = p;
    p /= "tokenizer.json";
    if (!std::filesystem::is_regular_file(p, ec)) {
      throw Error(ErrorCode::kNotFound, path + ": no tokenizer.json in this folder");
    }
  } else if (!std::filesystem::exists(p, ec)) {
    throw Error(ErrorCode::kNotFound, path + ": no such file or folder");
  } else {
    folder = p.parent_path();
  }
  const std::string tokenizer_json = ReadFile(p);
  std::string config_json;
  std::string config_source = "tokenizer_config.json";
  const std::filesystem::path config_path =
      (folder.empty() ? std::filesystem::path(".") : folder) / "tokenizer_config.json";
  if (std::filesystem::is_regular_file(config_path, ec)) {
    config_json = ReadFile(config_path);
    config_source = config_path.string();
  }
  return FromJson(tokenizer_json, config_json, p.string(), config_source);
}

Tokenizer Tokenizer::FromJson(std::string_view tokenizer_json, std::string_view config_json,
                              const std::string& source, const std::string& config_source) {
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  const TokenizerJson data = ReadTokenizerJson(tokenizer_json, source);
  const json& j = data.rest;
  if (!j.is_object()) {
    throw InvalidInput(source + ": not a JSON object (is it a Hugging Face tokenizer.json?)");
  }
  if (!j.contains("model") || !j["model"].is_object()) {
    throw InvalidInput(source + ": no \"model\" object (is it a Hugging Face tokenizer.json?)");
  }
  impl->config = ParseConfig(config_json, config_source);
  impl->config_source = config_source;
  impl->normalizer = MakeNormalizer(j.value("normalizer", json()), source + ": normalizer");
  impl->pre_tokenizer =
      MakePreTokenizer(j.value("pre_tokenizer", json()), source + ": pre_tokenizer");
  impl->post_processor =
      MakePostProcessor(j.value("post_processor", json()), source + ": post_processor");
  impl->decoder = MakeDecoder(j.value("decoder", json()), source + ": decoder");
  const bool byte_level = impl->pre_tokenizer && impl->pre_tokenizer->byte_level();
  impl->model = std::make_unique<Bpe>(j["model"], data, byte_level, source + ": model");

  const json added = j.value("added_tokens", json::array());
  if (!added.is_array()) throw InvalidInput(source + ": added_tokens: not an array");
  for (size_t i = 0; i < added.size(); ++i) {
    const json& a = added[i];
    const std::string where = source + ": added_tokens[" + std::to_string(i) + "]";
    if (!a.is_object() || !a.contains("content") || !a["content"].is_string() ||
        !a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0) {
      throw InvalidInput(where + ": needs a string \"content\" and a non-negative integer \"id\"");
    }
    AddedToken t;
    t.content = a["content"].get<std::string>();
    t.id = a["id"].get<TokenId>();
    t.lstrip = a.value("lstrip", false);
    t.rstrip = a.value("rstrip", false);
    t.special = a.value("special", false);
    t.normalized = a.contains("normalized") && a["normalized"].is_boolean()
                       ? a["normalized"].get<bool>()
                       : !t.special;
    if (auto old = impl->model->vocab().Find(t.content); old && *old != t.id) {
      impl->remap.emplace_back(*old, t.id);
    }
    impl->model->AddToken(t.content, t.id);
    impl->added.push_back(t);
  }
  for (size_t i = 0; i < impl->added.size(); ++i) {
    const AddedToken& t = impl->added[i];
    impl->added_by_content[t.content] = i;
    impl->longest_added = std::max(impl->longest_added, t.content.size());
    if (t.normalized && impl->normalizer) {
      const std::string n = impl->normalizer->Normalize(t.content);
      impl->added_by_content[n] = i;
      impl->longest_added = std::max(impl->longest_added, n.size());
      impl->normalized.Add(n);
    } else {
      impl->unnormalized.Add(t.content);
    }
  }
  const size_t n = impl->model->id_to_token().size();
  impl->is_added.assign(n, false);
  impl->is_special.assign(n, false);
  std::vector<std::string> special;
  for (const AddedToken& t : impl->added) {
    impl->is_added[t.id] = true;
    if (t.special) special.push_back(t.content);
  }
  for (const std::string& s : impl->config.additional_special_tokens) special.push_back(s);
  // The reference skips by token string: the id spelled like a special token is special.
  for (const std::string& s : special) {
    if (auto id = impl->model->vocab().Find(s)) impl->is_special[*id] = true;
  }
  return Tokenizer(std::move(impl));
}

std::vector<TokenId> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  if (auto bad = FindInvalidUtf8(text)) {
    throw InvalidInput("text is not valid UTF-8 (byte " + std::to_string(*bad) + " of " +
                       std::to_string(text.size()) + ")");
  }
  const Impl& m = *impl_;
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  Bpe::Scratch scratch;
  std::vector<std::string> sections, subsections, pieces;
  m.unnormalized.Split(text, sections);
  m.StripAround(sections);
  for (size_t index = 0; index < sections.size(); ++index) {
    std::string section = std::move(sections[index]);
    if (section.empty()) continue;
    if (const AddedToken* t = m.FindAdded(section)) {
      ids.push_back(t->id);
      continue;
    }
    if (m.normalizer) section = m.normalizer->Normalize(std::move(section));
    if (section.empty()) continue;
    subsections.clear();
    m.normalized.Split(section, subsections);
    m.StripAround(subsections);
    for (const std::string& sub : subsections) {
      if (sub.empty()) continue;
      if (const AddedToken* t = m.FindAdded(sub)) {
        ids.push_back(t->id);
        continue;
      }
      m.EncodeSubsection(sub, static_cast<int>(index), ids, scratch, pieces);
    }
  }
  if (m.post_processor) m.post_processor->Process(ids, add_special_tokens);
  return ids;
}

std::string Tokenizer::Decode(std::span<const TokenId> ids, const DecodeOptions& options) const {
  const Impl& m = *impl_;
  const auto& tokens = m.model->id_to_token();
  std::vector<DecodeToken> chain;
  chain.reserve(ids.size());
  for (TokenId id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokens.size() || tokens[id].empty()) {
      throw InvalidInput("token id " + std::to_string(id) + " is not in the vocabulary (ids 0.." +
                         std::to_string(static_cast<int64_t>(tokens.size()) - 1) + ")");
    }
    if (options.skip_special_tokens && m.is_special[id]) continue;
    chain.push_back({tokens[id], static_cast<bool>(m.is_added[id])});
  }
  std::string text;
  if (m.decoder) {
    for (const DecodeToken& t : m.decoder->DecodeChain(std::move(chain))) text += t.text;
  } else {
    for (size_t i = 0; i < chain.size(); ++i) text += (i ? " " : "") + chain[i].text;
  }
  if (options.clean_up_tokenization_spaces.value_or(m.config.clean_up_tokenization_spaces)) {
    text = CleanUp(std::move(text));
  }
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->model->id_to_token().size());
}

std::optional<TokenId> Tokenizer::TokenToId(std::string_view token) const {
  return impl_->model->vocab().Find(token);
}

std::string Tokenizer::IdToToken(TokenId id) const {
  const auto& tokens = impl_->model->id_to_token();
  if (id < 0 || static_cast<size_t>(id) >= tokens.size()) {
    throw InvalidInput("token id " + std::to_string(id) + " is not in the vocabulary");
  }
  return tokens[id];
}

bool Tokenizer::IsSpecial(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->is_special.size() && impl_->is_special[id];
}

std::string Tokenizer::ApplyChatTemplate(std::string_view messages_json, bool add_generation_prompt,
                                         std::string_view extra_json) const {
  const Impl& m = *impl_;
  if (!m.config.chat_template) {
    throw InvalidInput(m.config_source +
                       ": no chat_template (the model's tokenizer_config.json has none; "
                       "give the prompt as plain text)");
  }
  const auto messages = nlohmann::ordered_json::parse(messages_json, nullptr, false);
  if (messages.is_discarded() || !messages.is_array()) {
    throw InvalidInput("chat messages: not a JSON list of {\"role\": ..., \"content\": ...}");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& msg = messages[i];
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string()) {
      throw InvalidInput("chat messages[" + std::to_string(i) + "]: needs a string \"role\"");
    }
  }
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  // As transformers passes its special_tokens_map: only the tokens the config names.
  const std::pair<const char*, const std::optional<std::string>*> tokens[] = {
      {"bos_token", &m.config.bos_token},
      {"eos_token", &m.config.eos_token},
      {"unk_token", &m.config.unk_token},
      {"pad_token", &m.config.pad_token}};
  for (const auto& [name, value] : tokens) {
    if (*value) context[name] = **value;
  }
  if (!extra_json.empty()) {
    const auto extra = nlohmann::ordered_json::parse(extra_json, nullptr, false);
    if (extra.is_discarded() || !extra.is_object()) {
      throw InvalidInput("chat template variables: not a JSON object");
    }
    for (auto it = extra.begin(); it != extra.end(); ++it) context[it.key()] = it.value();
  }
  const ChatTemplate t =
      ChatTemplate::Parse(*m.config.chat_template, m.config_source + ": chat_template");
  return t.Render(context.dump());
}

const TokenizerConfig& Tokenizer::config() const { return impl_->config; }

std::optional<TokenId> Tokenizer::bos_id() const {
  return impl_->config.bos_token ? TokenToId(*impl_->config.bos_token) : std::nullopt;
}

std::optional<TokenId> Tokenizer::eos_id() const {
  return impl_->config.eos_token ? TokenToId(*impl_->config.eos_token) : std::nullopt;
}

std::string Tokenizer::Describe() const {
  const Impl& m = *impl_;
  std::ostringstream s;
  s << "BPE " << (m.model->byte_level() ? "byte-level" : "with byte fallback") << ", "
    << vocab_size() << " ids, " << m.model->merge_count() << " merges, " << m.added.size()
    << " added tokens";
  if (m.config.chat_template) s << ", chat template";
  return s.str();
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer) {
  options_.skip_special_tokens = skip_special_tokens;
  options_.clean_up_tokenization_spaces = false;
}

std::string StreamDecoder::Push(TokenId id) {
  ids_.push_back(id);
  const std::span<const TokenId> all(ids_);
  const std::string before =
      tokenizer_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), options_);
  const std::string now = tokenizer_.Decode(all.subspan(prefix_offset_), options_);
  // Hold back while the text ends in an incomplete character (decoded as U+FFFD).
  const bool incomplete = now.size() >= 3 && now.compare(now.size() - 3, 3, "\xEF\xBF\xBD") == 0;
  if (now.size() <= before.size() || incomplete) return {};
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return now.substr(before.size());
}

std::string StreamDecoder::Finish() {
  if (read_offset_ == ids_.size()) return {};
  const std::span<const TokenId> all(ids_);
  const std::string before =
      tokenizer_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), options_);
  const std::string now = tokenizer_.Decode(all.subspan(prefix_offset_), options_);
  prefix_offset_ = read_offset_ = ids_.size();
  return now.size() > before.size() ? now.substr(before.size()) : std::string();
}

}  // namespace lockstep::tokenizer
