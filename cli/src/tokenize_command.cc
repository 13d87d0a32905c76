// `lockstep tokenize` and `lockstep detokenize`: text to ids and back with a model's Hugging Face
// tokenizer (tokenizer.json, tokenizer_config.json).
#include <fstream>
#include <iostream>
#include <sstream>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/tokenizer/chat_template.h"
#include "lockstep/tokenizer/tokenizer.h"
#include "token_list.h"

namespace lockstep::cli {
namespace {

// The inputs of --file: a .jsonl file holds one JSON string per line (blank lines skipped), any
// other file one input per line (split at '\n', bytes kept as they are).
std::vector<std::string> ReadInputs(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "--file " + path + ": cannot open the file");
  std::ostringstream all;
  all << in.rdbuf();
  const std::string text = all.str();
  const bool jsonl = path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  std::vector<std::string> inputs;
  size_t start = 0;
  int line_number = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (!jsonl) {
      inputs.push_back(std::move(line));
      continue;
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_string()) {
      throw InvalidInput("--file " + path + ":" + std::to_string(line_number) +
                         ": not a JSON string (a .jsonl input file holds one \"...\" per line)");
    }
    inputs.push_back(j.get<std::string>());
  }
  return inputs;
}

std::string JoinIds(const std::vector<tokenizer::TokenId>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? " " : "") + std::to_string(ids[i]);
  return out;
}

const char* kTokenizerHelp =
    "a tokenizer.json, or a model folder holding one (and tokenizer_config.json)";

// --messages FILE: a conversation, as a JSON list of {"role", "content", ...} or an object with
// "messages" and other template variables ("tools", "enable_thinking", ...). Returns the
// messages' JSON and the other variables' JSON object.
std::pair<std::string, std::string> ReadConversation(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "--messages " + path + ": cannot open the file");
  std::ostringstream all;
  all << in.rdbuf();
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(all.str(), nullptr, false);
  if (j.is_array()) return {j.dump(), "{}"};
  if (j.is_object() && j.contains("messages") && j["messages"].is_array()) {
    const std::string messages = j["messages"].dump();
    j.erase("messages");
    return {messages, j.dump()};
  }
  throw InvalidInput("--messages " + path +
                     ": not a conversation (a JSON list of {\"role\": ..., \"content\": ...}, or "
                     "an object with \"messages\" and other template variables)");
}

int Tokenize(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string path, text, file, messages_file;
  opts.add_options()("tokenizer", po::value<std::string>(&path), kTokenizerHelp)(
      "text", po::value<std::string>(&text), "the text to encode")(
      "file", po::value<std::string>(&file),
      "encode each line of a text file, or each JSON string of a .jsonl file (one per line)")(
      "add-special-tokens", "add the tokenizer's special tokens (e.g. BOS) as its template says")(
      "chat",
      "apply the tokenizer's chat template (tokenizer_config.json) first: --text becomes one "
      "user message; the special tokens are the template's own")(
      "messages", po::value<std::string>(&messages_file),
      "a conversation to encode through the chat template: a JSON list of {\"role\", "
      "\"content\"} messages, or an object with \"messages\" and other template variables "
      "(\"tools\", ...); implies --chat")(
      "no-generation-prompt",
      "with --chat: do not end with the assistant's turn opening (add_generation_prompt false)");
  po::variables_map vm;
  if (!ParseOrHelp(args,
                   "lockstep tokenize --tokenizer DIR|tokenizer.json (--text T | --file F | "
                   "--messages M.json) [--chat [--no-generation-prompt]] [--add-special-tokens] "
                   "[--json]\n\n"
                   "Prints one line of space-separated token ids per input (--json: {\"ids\": "
                   "[[...], ...]}),\nthe same ids Hugging Face's tokenizers give. --chat renders "
                   "the conversation with the\nmodel's chat template as transformers' "
                   "apply_chat_template does (--json adds the\nrendered \"prompts\") and encodes "
                   "that; a template construct Lockstep does not support is\none error line naming "
                   "it.",
                   opts, {}, vm)) {
    return 0;
  }
  if (path.empty())
    throw UsageError("tokenize: --tokenizer is required (" + std::string(kTokenizerHelp) + ")");
  if (vm.count("text") + vm.count("file") + vm.count("messages") != 1) {
    throw UsageError("tokenize: give exactly one of --text T, --file F or --messages M.json");
  }
  const bool chat = vm.count("chat") > 0 || vm.count("messages") > 0;
  if (chat && vm.count("file")) {
    throw UsageError("tokenize: --chat takes --text T (one user message) or --messages M.json");
  }
  if (!chat && vm.count("no-generation-prompt")) {
    throw UsageError("tokenize: --no-generation-prompt goes with --chat");
  }
  if (chat && vm.count("add-special-tokens")) {
    throw UsageError(
        "tokenize: --chat writes the template's special tokens; drop --add-special-tokens");
  }
  std::pair<std::string, std::string> conversation;
  if (vm.count("messages")) {
    conversation = ReadConversation(messages_file);
  } else if (chat) {
    conversation = {tokenizer::ChatTemplate::MessagesJson({{"user", text}}), "{}"};
  }
  std::vector<std::string> inputs = vm.count("text")   ? std::vector<std::string>{text}
                                    : vm.count("file") ? ReadInputs(file)
                                                       : std::vector<std::string>{};
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::Load(path);
  ctx.log->debug("tokenizer {}: {}", path, tok.Describe());
  if (chat) {
    inputs = {tok.ApplyChatTemplate(conversation.first, vm.count("no-generation-prompt") == 0,
                                    conversation.second)};
  }
  const bool special = vm.count("add-special-tokens") > 0;
  nlohmann::json all = nlohmann::json::array();
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<tokenizer::TokenId> ids;
    try {
      ids = tok.Encode(inputs[i], special);
    } catch (const Error& e) {
      throw Error(e.code(), (vm.count("text") ? std::string("--text")
                             : chat           ? std::string("--messages")
                                    : "--file " + file + " input " + std::to_string(i + 1)) +
                                ": " + e.what());
    }
    if (ctx.json) {
      all.push_back(ids);
    } else {
      std::cout << JoinIds(ids) << "\n";
    }
  }
  if (ctx.json) {
    nlohmann::json out = {{"ids", all}};
    if (chat) out["prompts"] = inputs;
    PrintJson(out);
  }
  return 0;
}

// --file for detokenize: one JSON array of ids per line (blank lines skipped).
std::vector<std::vector<int32_t>> ReadIdLists(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, "--file " + path + ": cannot open the file");
  std::vector<std::vector<int32_t>> lists;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    std::vector<int32_t> ids;
    bool ok = j.is_array();
    for (size_t k = 0; ok && k < j.size(); ++k) {
      ok = j[k].is_number_integer() && j[k].get<int64_t>() >= 0 && j[k].get<int64_t>() <= INT32_MAX;
      if (ok) ids.push_back(j[k].get<int32_t>());
    }
    if (!ok) {
      throw InvalidInput("--file " + path + ":" + std::to_string(number) +
                         ": not a JSON array of token ids (want e.g. [1, 2, 3])");
    }
    lists.push_back(std::move(ids));
  }
  return lists;
}

int Detokenize(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string path, ids_text, file;
  opts.add_options()("tokenizer", po::value<std::string>(&path), kTokenizerHelp)(
      "ids", po::value<std::string>(&ids_text), "comma-separated token ids, e.g. 1,2,3")(
      "file", po::value<std::string>(&file),
      "decode each line of a .jsonl file, a JSON array of ids per line")(
      "skip-special-tokens", "leave out special tokens (BOS, EOS, <|im_start|>, ...)")(
      "no-clean-up",
      "keep spaces before punctuation even where the tokenizer's config cleans "
      "them up (clean_up_tokenization_spaces)");
  po::variables_map vm;
  if (!ParseOrHelp(args,
                   "lockstep detokenize --tokenizer DIR|tokenizer.json (--ids 1,2,3 | --file "
                   "F.jsonl) [--skip-special-tokens] [--no-clean-up] [--json]\n\n"
                   "Prints the text of the ids as Hugging Face's decode gives it (--json: "
                   "{\"text\": ...}).\nWith --file, each text as a JSON string on its own line "
                   "(--json: {\"texts\": [...]}).",
                   opts, {}, vm)) {
    return 0;
  }
  if (path.empty()) {
    throw UsageError("detokenize: --tokenizer is required (" + std::string(kTokenizerHelp) + ")");
  }
  if (vm.count("ids") == vm.count("file")) {
    throw UsageError("detokenize: give exactly one of --ids 1,2,3 or --file F.jsonl");
  }
  const std::vector<std::vector<int32_t>> lists =
      vm.count("ids") ? std::vector<std::vector<int32_t>>{ParseTokenList(ids_text, "--ids")}
                      : ReadIdLists(file);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::Load(path);
  tokenizer::DecodeOptions options;
  options.skip_special_tokens = vm.count("skip-special-tokens") > 0;
  if (vm.count("no-clean-up")) options.clean_up_tokenization_spaces = false;
  nlohmann::json texts = nlohmann::json::array();
  for (size_t i = 0; i < lists.size(); ++i) {
    try {
      texts.push_back(tok.Decode(lists[i], options));
    } catch (const Error& e) {
      throw Error(e.code(),
                  (vm.count("ids") ? std::string("--ids")
                                   : "--file " + file + " list " + std::to_string(i + 1)) +
                      ": " + e.what());
    }
  }
  if (vm.count("ids")) {
    if (ctx.json) {
      PrintJson({{"text", texts[0]}});
    } else {
      std::cout << texts[0].get<std::string>() << "\n";
    }
  } else if (ctx.json) {
    PrintJson({{"texts", texts}});
  } else {
    for (const auto& t : texts) std::cout << t.dump() << "\n";
  }
  return 0;
}

}  // namespace

CommandGroup TokenizeCommand() {
  return {"tokenize", "text to token ids with a model's Hugging Face tokenizer", Tokenize};
}

CommandGroup DetokenizeCommand() {
  return {"detokenize", "token ids to text with a model's Hugging Face tokenizer", Detokenize};
}

}  // namespace lockstep::cli
