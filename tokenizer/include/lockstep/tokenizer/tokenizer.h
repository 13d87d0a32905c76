// lockstep::tokenizer::Tokenizer — text to token ids and back, as Hugging Face's tokenizers do it.
//
// A Tokenizer is loaded from a Hugging Face `tokenizer.json` (and the `tokenizer_config.json`
// beside it, when there is one) and encodes exactly as the reference implementation does: the
// same ids for the same text. Supported: BPE models, byte-level (Llama 3, Qwen2/3, GPT-2) and
// with byte fallback over the `▁` metaspace (Llama 2, Mistral, TinyLlama); the normalizers,
// pre-tokenizers, post-processors and decoders those files use (see kSupported* in the .cc files);
// added and special tokens. A file of another kind is refused at load with one line naming the
// field, the value and what is supported.
//
// Thread-safety: a loaded Tokenizer is immutable; Encode/Decode and every other const member
// may be called from any number of threads at once. A StreamDecoder is one sequence's state and
// is used by one thread at a time; it keeps a reference to its Tokenizer, which must outlive it.
//
// Errors: loading throws lockstep::Error (kNotFound for a missing file, kInvalidInput for a
// malformed or unsupported one, naming the file and field). Encode throws kInvalidInput for text
// that is not valid UTF-8 (naming the byte offset); Decode throws kInvalidInput for an id outside
// the vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::tokenizer {

using TokenId = int32_t;

// What tokenizer_config.json adds to tokenizer.json (all optional there).
struct TokenizerConfig {
  std::optional<std::string> bos_token;      // e.g. "<s>", "<|begin_of_text|>"
  std::optional<std::string> eos_token;      // e.g. "</s>", "<|im_end|>"
  std::optional<std::string> unk_token;      // e.g. "<unk>"
  std::optional<std::string> pad_token;      // e.g. "<|endoftext|>"
  std::optional<std::string> chat_template;  // the default Jinja chat template, when there is one
  // Decode's default for clean_up_tokenization_spaces (" ." -> "." and the like); the reference
  // defaults to true when the file does not say.
  bool clean_up_tokenization_spaces = true;
  // Tokens the config names as special besides the special added tokens (skipped on decode
  // with skip_special_tokens).
  std::vector<std::string> additional_special_tokens;
};

struct DecodeOptions {
  bool skip_special_tokens = false;  // drop special tokens (BOS, EOS, <|im_start|>, ...)
  // Clean up spaces before punctuation as the reference does; unset: the config's default.
  // Lossy (decode(encode(x)) may differ from x), so streaming never applies it.
  std::optional<bool> clean_up_tokenization_spaces;
};

class Tokenizer {
 public:
  // `path`: a tokenizer.json file, or a folder holding one (and maybe tokenizer_config.json).
  static Tokenizer Load(const std::string& path);
  // From the files' contents; `config_json` may be empty. The sources name the inputs in errors.
  static Tokenizer FromJson(std::string_view tokenizer_json, std::string_view config_json,
                            const std::string& source = "tokenizer.json",
                            const std::string& config_source = "tokenizer_config.json");
  // True when `path` is a tokenizer.json or a folder holding one (does not parse it).
  static bool Exists(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text (UTF-8) to ids. `add_special_tokens`: apply the post-processor's template (BOS, ...).
  std::vector<TokenId> Encode(std::string_view text, bool add_special_tokens = false) const;
  // Ids to text (UTF-8). Throws for an id outside [0, vocab_size()).
  std::string Decode(std::span<const TokenId> ids, const DecodeOptions& options = {}) const;

  // The number of ids (the largest id + 1, added tokens included).
  int32_t vocab_size() const;
  std::optional<TokenId> TokenToId(std::string_view token) const;
  // The token's string as the vocabulary spells it (byte-level tokens in their mapped alphabet).
  std::string IdToToken(TokenId id) const;
  bool IsSpecial(TokenId id) const;

  // The config's chat template rendered for `messages_json` (a JSON list of {"role", "content",
  // ...}) as transformers' apply_chat_template renders it: with the special tokens the config
  // names (bos_token, eos_token, unk_token, pad_token) and add_generation_prompt; `extra_json`, a
  // JSON object or empty, adds variables ("tools", "enable_thinking", ...). Throws kInvalidInput
  // when the config has no chat template, for a construct it does not support and for the
  // template's own raise_exception (see chat_template.h). Encode the result without
  // add_special_tokens: the template writes BOS itself.
  std::string ApplyChatTemplate(std::string_view messages_json, bool add_generation_prompt,
                                std::string_view extra_json = {}) const;

  const TokenizerConfig& config() const;
  std::optional<TokenId> bos_id() const;  // config's bos_token, when it is in the vocabulary
  std::optional<TokenId> eos_id() const;  // config's eos_token, when it is in the vocabulary
  // One line naming the model kind and pipeline ("BPE byte-level, 151665 tokens, ...").
  std::string Describe() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class StreamDecoder;
};

// Turns ids into text as they arrive (one generated token at a time), emitting only whole
// characters: a multi-byte character split over several byte tokens appears once its last byte
// has come. The concatenation of everything Push and Finish return equals
// tokenizer.Decode(all ids, {skip_special_tokens, clean_up = false}).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  // The text this id completes (may be empty while a character is incomplete).
  std::string Push(TokenId id);
  // The rest (an incomplete character at the end becomes U+FFFD, as Decode gives it).
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  DecodeOptions options_;
  std::vector<TokenId> ids_;
  size_t prefix_offset_ = 0;  // ids_[prefix_offset_, read_offset_) are context, already emitted
  size_t read_offset_ = 0;    // ids_[read_offset_, end) are not yet emitted
};

}  // namespace lockstep::tokenizer
