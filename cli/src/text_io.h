// `lockstep run --text` (in one process and with --transport): its flags, and TextIo — the prompt
// through the model's tokenizer (with --chat through its chat template first), the tokens that
// end the run (end-of-sequence ids), and the generated ids back to text on stdout as they come
// (whole characters only). Not thread-safe (one run's thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "command.h"
#include "lockstep/tokenizer/tokenizer.h"

namespace lockstep::cli {

// --text, --tokenizer, --chat, --system, --ignore-eos.
struct TextFlags {
  std::string text, tokenizer_path, system;
  bool chat = false, ignore_eos = false;
};

// Adds the flags to `opts` (their values land in `f`).
void AddTextOptions(po::options_description& opts, TextFlags& f);
// After parsing: sets the switches; UsageError for --chat, --system or --ignore-eos without
// --text, and --system without --chat.
void CheckTextFlags(const po::variables_map& vm, TextFlags& f);

class TextIo {
 public:
  // The tokenizer: --tokenizer, else the --model folder's (`config`: the folder or its
  // config.json). UsageError when there is none there.
  TextIo(const TextFlags& flags, const std::string& config);
  TextIo(const TextIo&) = delete;  // the stream decoder refers to the tokenizer
  TextIo& operator=(const TextIo&) = delete;

  // --text (with --chat: the chat template's rendering) as ids.
  std::vector<int32_t> EncodePrompt() const;
  // The ids that end the run: the model's eos_token_id (config.json, generation_config.json) and
  // the tokenizer's EOS; none with --ignore-eos.
  std::vector<int32_t> StopIds() const;
  // InvalidInput naming the id when the tokenizer gives one outside the model's vocabulary.
  void CheckVocabulary(const std::vector<int32_t>& ids, int64_t vocab_size) const;
  // Prints the text of `ids` (held back where a character is not whole yet).
  void Stream(const std::vector<int32_t>& ids);
  // Prints what was held back and the final newline.
  void Finish();
  // The whole text of `ids` (not streamed).
  std::string Decode(const std::vector<int32_t>& ids) const;

 private:
  TextFlags flags_;
  std::string config_;
  tokenizer::Tokenizer tokenizer_;
  tokenizer::StreamDecoder stream_;
};

}  // namespace lockstep::cli
