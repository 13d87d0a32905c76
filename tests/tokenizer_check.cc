// tokenizer_check: Lockstep's side of tests/tokenizer_test.sh, the counterpart of
// `node tests/js/reference.mjs check` (same arguments, same JSON). One process per tokenizer:
// every corpus line encoded (without and with special tokens) and decoded (plainly and skipping
// special tokens), every conversation rendered by the tokenizer's own chat template and by the
// test templates paired with it, each rendered text encoded.
//   tokenizer_check NAME DIR CORPUS.jsonl CHATS.json TEMPLATES.json
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lockstep/common/error.h"
#include "lockstep/tokenizer/chat_template.h"
#include "lockstep/tokenizer/tokenizer.h"

namespace {

using lockstep::tokenizer::ChatTemplate;
using lockstep::tokenizer::TokenId;
using lockstep::tokenizer::Tokenizer;
using Json = nlohmann::ordered_json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The message of a template's raise_exception, as the reference reports it; other errors whole.
std::string ErrorMessage(const std::string& what) {
  const std::string marker = ": raise_exception: ";
  const size_t at = what.find(marker);
  return at == std::string::npos ? what : what.substr(at + marker.size());
}

int Main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: tokenizer_check NAME DIR CORPUS.jsonl CHATS.json TEMPLATES.json\n";
    return 2;
  }
  const std::string name = argv[1];
  const Tokenizer tokenizer = Tokenizer::Load(argv[2]);
  Json out = Json::object();  // filled at the end: an ordered_json's members move as it grows
  Json encode = Json::array(), encode_special = Json::array(), decode = Json::array(),
       decode_skip = Json::array(), chat = Json::array(), chat_ids = Json::array();
  std::istringstream corpus(ReadFile(argv[3]));
  for (std::string line; std::getline(corpus, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string text = Json::parse(line).get<std::string>();
    encode.push_back(tokenizer.Encode(text, false));
    const std::vector<TokenId> ids = tokenizer.Encode(text, true);
    encode_special.push_back(ids);
    decode.push_back(tokenizer.Decode(ids));
    lockstep::tokenizer::DecodeOptions skip;
    skip.skip_special_tokens = true;
    decode_skip.push_back(tokenizer.Decode(ids, skip));
  }

  struct Named {
    std::string name;
    std::optional<ChatTemplate> own_or_fixture;  // empty: the tokenizer's own (ApplyChatTemplate)
    Json tokens = Json::object();
  };
  std::vector<Named> templates;
  if (tokenizer.config().chat_template) templates.push_back({"own", std::nullopt, {}});
  for (const Json& t : Json::parse(ReadFile(argv[5]))) {
    if (t.value("tokenizer", "") != name) continue;
    Named n{t["name"].get<std::string>(),
            ChatTemplate::Parse(t["template"].get<std::string>(), t["name"].get<std::string>()),
            Json::object()};
    for (const char* token : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      if (t.contains(token)) n.tokens[token] = t[token];
    }
    templates.push_back(std::move(n));
  }
  const Json cases = Json::parse(ReadFile(argv[4]));
  for (const Named& t : templates) {
    for (size_t i = 0; i < cases.size(); ++i) {
      const Json& c = cases[i];
      Json entry = {{"template", t.name}, {"case", i}};
      try {
        std::string text;
        if (!t.own_or_fixture) {
          Json extra = c;
          extra.erase("messages");
          extra.erase("add_generation_prompt");
          text = tokenizer.ApplyChatTemplate(c["messages"].dump(),
                                             c.value("add_generation_prompt", false), extra.dump());
        } else {
          Json context = t.tokens;
          for (auto it = c.begin(); it != c.end(); ++it) context[it.key()] = it.value();
          text = t.own_or_fixture->Render(context.dump());
        }
        entry["text"] = text;
        chat_ids.push_back(tokenizer.Encode(text, false));
      } catch (const lockstep::Error& e) {
        entry["error"] = ErrorMessage(e.what());
      }
      chat.push_back(std::move(entry));
    }
  }
  out["encode"] = std::move(encode);
  out["encode_special"] = std::move(encode_special);
  out["decode"] = std::move(decode);
  out["decode_skip"] = std::move(decode_skip);
  out["chat"] = std::move(chat);
  out["chat_ids"] = std::move(chat_ids);
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "tokenizer_check: " << e.what() << "\n";
    return 1;
  }
}
