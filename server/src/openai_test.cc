#include "lockstep/server/openai.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace lockstep::server {
namespace {

using nlohmann::json;

// A byte-level tokenizer of 256 single-byte tokens (no merges): id = the byte for printable ASCII.
tokenizer::Tokenizer Bytes() {
  std::vector<int> bs;
  for (int b = 33; b < 127; ++b) bs.push_back(b);
  for (int b = 0xA1; b < 0xAD; ++b) bs.push_back(b);
  for (int b = 0xAE; b < 0x100; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  }
  json vocab = json::object();
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string utf8;
    const int c = cs[i];
    if (c < 0x80) {
      utf8 += static_cast<char>(c);
    } else {
      utf8 += static_cast<char>(0xC0 | (c >> 6));
      utf8 += static_cast<char>(0x80 | (c & 0x3F));
    }
    vocab[utf8] = bs[i];
  }
  const json tok = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", json::array()}};
  const json config = {{"chat_template",
                        "{% for m in messages %}<{{ m.role }}>{{ m['content'] }}{% endfor %}"
                        "{% if add_generation_prompt %}<assistant>{% endif %}"}};
  return tokenizer::Tokenizer::FromJson(tok.dump(), config.dump());
}

class OpenAi : public ::testing::Test {
 protected:
  OpenAi() : tok_(Bytes()) {
    card_.id = "tiny";
    card_.context = 32;
    card_.vocab_size = 256;
    card_.tokenizer = &tok_;
    card_.eos = {'!'};
  }
  ApiError Refused(Endpoint e, const std::string& body) {
    try {
      ParseRequest(e, body, card_);
    } catch (const ApiError& err) {
      return err;
    }
    ADD_FAILURE() << "accepted: " << body;
    return ApiError(0, "");
  }
  tokenizer::Tokenizer tok_;
  ModelCard card_;
};

TEST_F(OpenAi, ParsesPromptsAndFields) {
  GenerationRequest r = ParseRequest(
      Endpoint::kCompletions,
      R"({"model":"tiny","prompt":"hi","max_tokens":5,"temperature":0,"top_p":0.5,"seed":7,
          "stop":["xy"],"stream":true,"stream_options":{"include_usage":true}})",
      card_);
  EXPECT_EQ(r.prompt, (std::vector<int32_t>{'h', 'i'}));
  EXPECT_EQ(r.max_tokens, 5);
  EXPECT_EQ(r.sampling.temperature, 0.0);
  EXPECT_EQ(r.sampling.top_p, 0.5);
  EXPECT_EQ(r.sampling.seed, 7u);
  EXPECT_EQ(r.stop, std::vector<std::string>{"xy"});
  EXPECT_TRUE(r.stream && r.include_usage);
  r = ParseRequest(Endpoint::kCompletions, R"({"model":"tiny","prompt":[[1,2,3]]})", card_);
  EXPECT_EQ(r.prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(r.max_tokens, 16);           // OpenAI's default for completions
  EXPECT_EQ(r.sampling.temperature, 1);  // and for temperature
  r = ParseRequest(
      Endpoint::kChatCompletions,
      R"({"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]})",
      card_);
  const std::string want = "<user>a<assistant>";
  EXPECT_EQ(r.prompt, std::vector<int32_t>(want.begin(), want.end()));
  EXPECT_EQ(r.max_tokens, 32 - static_cast<int64_t>(want.size()));  // the rest of the context
}

TEST_F(OpenAi, BadRequestsNameTheField) {
  struct Case {
    Endpoint e;
    std::string body;
    int status;
    std::string param;
    std::string says;
  };
  const Endpoint C = Endpoint::kCompletions, K = Endpoint::kChatCompletions;
  const std::vector<Case> cases = {
      {C, "{\"model\":", 400, "", "not valid JSON"},
      {C, "[1]", 400, "", "must be a JSON object"},
      {C, R"({"prompt":"a"})", 400, "model", "'model' is required"},
      {C, R"({"model":"gpt-4","prompt":"a"})", 404, "model", "does not exist"},
      {C, R"({"model":"tiny"})", 400, "prompt", "'prompt' is required"},
      {C, R"({"model":"tiny","prompt":5})", 400, "prompt", "must be a string or a list"},
      {C, R"({"model":"tiny","prompt":[1,999]})", 400, "prompt", "[0, 256)"},
      {C, R"({"model":"tiny","prompt":["a","b"]})", 400, "prompt", "one prompt per request"},
      {C, R"({"model":"tiny","prompt":"a","max_tokens":"5"})", 400, "max_tokens", "integer"},
      {C, R"({"model":"tiny","prompt":"a","max_tokens":32})", 400, "max_tokens",
       "maximum context length is 32"},
      {C, R"({"model":"tiny","prompt":"a","temperature":3})", 400, "temperature", "[0, 2]"},
      {C, R"({"model":"tiny","prompt":"a","top_p":0})", 400, "top_p", "(0, 1]"},
      {C, R"({"model":"tiny","prompt":"a","n":2})", 400, "n", "'n' must be 1"},
      {C, R"({"model":"tiny","prompt":"a","stop":[1]})", 400, "stop", "non-empty strings"},
      {C, R"({"model":"tiny","prompt":"a","stream":"yes"})", 400, "stream", "boolean"},
      {K, R"({"model":"tiny","messages":[]})", 400, "messages", "non-empty list"},
      {K, R"({"model":"tiny","messages":[{"content":"a"}]})", 400, "messages[0].role", "string"},
      {K, R"({"model":"tiny","messages":[{"role":"user","content":3}]})", 400,
       "messages[0].content", "a number"},
  };
  for (const Case& c : cases) {
    const ApiError e = Refused(c.e, c.body);
    EXPECT_EQ(e.status(), c.status) << c.body;
    EXPECT_EQ(e.param(), c.param) << c.body;
    EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << c.body << ": " << e.what();
    const json j = json::parse(e.Json());
    EXPECT_EQ(j["error"]["message"], e.what());
    EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("code"));
  }
  card_.tokenizer = nullptr;
  EXPECT_NE(std::string(Refused(C, R"({"model":"tiny","prompt":"a"})").what()).find("no tokenizer"),
            std::string::npos);
}

TEST_F(OpenAi, TextStreamStopsAtEosAndStopStringsHoldingBackPrefixes) {
  GenerationRequest r;
  r.stop = {"xyz"};
  TextStream s(card_, r);
  EXPECT_EQ(s.Push('a').text, "a");
  EXPECT_EQ(s.Push('x').text, "");  // might begin "xyz"
  EXPECT_EQ(s.Push('y').text, "");
  EXPECT_EQ(s.Push('b').text, "xyb");  // it did not
  EXPECT_EQ(s.Push('x').text, "");
  EXPECT_EQ(s.Push('y').text, "");
  TextStream::Delta d = s.Push('z');
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.text, "");
  EXPECT_EQ(s.text(), "axyb");

  TextStream e(card_, r);
  EXPECT_EQ(e.Push('c').text, "c");
  EXPECT_EQ(e.Push('x').text, "");
  d = e.Push('!');  // EOS: the held-back text shows, the EOS does not
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.text, "x");
  EXPECT_EQ(e.text(), "cx");

  r.ignore_eos = true;
  TextStream g(card_, r);
  d = g.Push('!');
  EXPECT_FALSE(d.stop);
  EXPECT_EQ(d.text, "!");
  EXPECT_EQ(g.Finish(), "");
}

TEST_F(OpenAi, ResponsesHaveOpenAisShape) {
  const json c = json::parse(ResponseJson(Endpoint::kChatCompletions, "chatcmpl-1", 5, "tiny",
                                          {"hi", {1, 2}, "length"}, {3, 2}));
  EXPECT_EQ(c["object"], "chat.completion");
  EXPECT_EQ(c["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(c["usage"]["total_tokens"], 5);
  const json k = json::parse(
      ChunkJson(Endpoint::kChatCompletions, "chatcmpl-1", 5, "tiny", {}, /*first=*/true));
  EXPECT_EQ(k["object"], "chat.completion.chunk");
  EXPECT_EQ(k["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(k["choices"][0]["finish_reason"].is_null());
  const json t =
      json::parse(ChunkJson(Endpoint::kCompletions, "cmpl-1", 5, "tiny", {"a", {97}, ""}, false));
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["text"], "a");
  const json m = json::parse(ModelsJson(card_));
  EXPECT_EQ(m["data"][0]["id"], "tiny");
}

}  // namespace
}  // namespace lockstep::server
