// The stages of tokenizer.json's pipeline besides the model: normalizer, pre-tokenizer,
// post-processor and decoder, each an interface with one implementation per "type" the supported
// families use, built from its JSON object. Every stage is immutable once built (safe to share
// between threads). An unsupported "type" is an InvalidInput naming the field and the supported
// types.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/tokenizer/tokenizer.h"

namespace lockstep::tokenizer {

// Text -> text (NFC, Prepend, Replace, ...). Input and output are valid UTF-8.
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string Normalize(std::string text) const = 0;
};
// `where` names the JSON field in errors ("tokenizer.json: normalizer").
std::unique_ptr<Normalizer> MakeNormalizer(const nlohmann::json& j, const std::string& where);

// One section of text (between added tokens) -> pieces the model encodes one by one.
struct PreTokenizeContext {
  int section_index = 0;  // the section's index among the text's sections (Metaspace "first")
};
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by the pieces each splits into, in order.
  virtual void PreTokenize(std::vector<std::string>& pieces,
                           const PreTokenizeContext& context) const = 0;
  // True when pieces are byte-level (the model sees each byte as a GPT-2 stand-in character).
  virtual bool byte_level() const { return false; }
};
std::unique_ptr<PreTokenizer> MakePreTokenizer(const nlohmann::json& j, const std::string& where);

// The model's ids -> the final ids (BOS/EOS by a template).
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void Process(std::vector<TokenId>& ids, bool add_special_tokens) const = 0;
};
// `token_id` looks up a special token's id for the template's {"ids": ...} check.
std::unique_ptr<PostProcessor> MakePostProcessor(const nlohmann::json& j, const std::string& where);

// Token strings (as the vocabulary spells them) -> text pieces, joined at the end.
struct DecodeToken {
  std::string text;
  bool added = false;  // an added token's content, passed through by the byte-level decoder
};
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<DecodeToken> DecodeChain(std::vector<DecodeToken> tokens) const = 0;
};
std::unique_ptr<Decoder> MakeDecoder(const nlohmann::json& j, const std::string& where);

// Shared by the stages: a tokenizer.json {"String": s} or {"Regex": r} pattern.
class Regex;
std::unique_ptr<Regex> MakePattern(const nlohmann::json& j, const std::string& where);

}  // namespace lockstep::tokenizer
