#include "text_io.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "lockstep/common/error.h"
#include "lockstep/launch/inputs.h"
#include "lockstep/tokenizer/chat_template.h"

namespace lockstep::cli {
namespace {

// --tokenizer, by default the model's own folder (--model may name the folder or its
// config.json); UsageError when there is no tokenizer there.
tokenizer::Tokenizer LoadTokenizer(const TextFlags& f, const std::string& config) {
  std::string path = f.tokenizer_path;
  if (path.empty() && !config.empty()) {
    std::error_code ec;
    path = std::filesystem::is_directory(config, ec)
               ? config
               : std::filesystem::path(config).parent_path().string();
  }
  if (path.empty() || !tokenizer::Tokenizer::Exists(path)) {
    throw UsageError(
        "--text needs a tokenizer: --tokenizer DIR|tokenizer.json, or a --model "
        "folder holding tokenizer.json" +
        (path.empty() ? std::string() : " (none at " + path + ")"));
  }
  return tokenizer::Tokenizer::Load(path);
}

}  // namespace

void AddTextOptions(po::options_description& opts, TextFlags& f) {
  opts.add_options()("text", po::value<std::string>(&f.text),
                     "prompt text instead of ids: encoded by the tokenizer (with its special "
                     "tokens, e.g. BOS); the generated text is printed as it streams")(
      "tokenizer", po::value<std::string>(&f.tokenizer_path),
      "tokenizer.json or a folder holding one, for --text (default: the --model folder)")(
      "chat",
      "with --text: the text is the user's message, put through the tokenizer's chat template "
      "(tokenizer_config.json) with the assistant's turn opened, as transformers' "
      "apply_chat_template(add_generation_prompt=True) does")(
      "system", po::value<std::string>(&f.system),
      "with --chat: a system message before the user's")(
      "ignore-eos",
      "with --text: keep generating --max-new tokens past an end-of-sequence token (by default "
      "a --text run ends at the tokenizer's EOS or the model's eos_token_id of config.json or "
      "generation_config.json, and prints the text without it)");
}

void CheckTextFlags(const po::variables_map& vm, TextFlags& f) {
  f.chat = vm.count("chat") > 0;
  f.ignore_eos = vm.count("ignore-eos") > 0;
  if ((f.chat || vm.count("system")) && f.text.empty()) {
    throw UsageError("--chat and --system go with --text (a chat template renders text)");
  }
  if (vm.count("system") && !f.chat) throw UsageError("--system goes with --chat");
  if (f.ignore_eos && f.text.empty()) {
    throw UsageError("--ignore-eos goes with --text (a --prompt run never ends early)");
  }
}

TextIo::TextIo(const TextFlags& flags, const std::string& config)
    : flags_(flags),
      config_(config),
      tokenizer_(LoadTokenizer(flags, config)),
      stream_(tokenizer_) {}

std::vector<int32_t> TextIo::EncodePrompt() const {
  try {
    if (!flags_.chat) return tokenizer_.Encode(flags_.text, /*add_special_tokens=*/true);
    std::vector<tokenizer::ChatMessage> messages;
    if (!flags_.system.empty()) messages.push_back({"system", flags_.system});
    messages.push_back({"user", flags_.text});
    const std::string prompt = tokenizer_.ApplyChatTemplate(
        tokenizer::ChatTemplate::MessagesJson(messages), /*add_generation_prompt=*/true);
    // The template writes BOS and its other special tokens itself.
    return tokenizer_.Encode(prompt, /*add_special_tokens=*/false);
  } catch (const Error& e) {
    throw Error(e.code(), std::string(flags_.chat ? "--chat: " : "--text: ") + e.what());
  }
}

std::vector<int32_t> TextIo::StopIds() const {
  if (flags_.ignore_eos) return {};
  std::vector<int32_t> stop;
  if (!config_.empty()) stop = launch::ModelEosIds(config_);
  const std::optional<int32_t> eos = tokenizer_.eos_id();
  if (eos && std::find(stop.begin(), stop.end(), *eos) == stop.end()) stop.push_back(*eos);
  return stop;
}

void TextIo::CheckVocabulary(const std::vector<int32_t>& ids, int64_t vocab_size) const {
  for (int32_t id : ids) {
    if (id >= vocab_size) {
      throw InvalidInput("--text: the tokenizer gives id " + std::to_string(id) +
                         ", outside the model's vocabulary of " + std::to_string(vocab_size) +
                         " (is --tokenizer the model's own?)");
    }
  }
}

void TextIo::Stream(const std::vector<int32_t>& ids) {
  for (int32_t id : ids) std::cout << stream_.Push(id);
  std::cout.flush();
}

void TextIo::Finish() { std::cout << stream_.Finish() << "\n"; }

std::string TextIo::Decode(const std::vector<int32_t>& ids) const {
  tokenizer::DecodeOptions o;
  o.clean_up_tokenization_spaces = false;
  return tokenizer_.Decode(ids, o);
}

}  // namespace lockstep::cli
