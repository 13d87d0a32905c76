// Reading tokenizer.json fast: one SAX pass of nlohmann's parser that sends model.vocab and
// model.merges (nearly all of a 2-11 MB file) straight into flat arrays, and builds a JSON tree
// of the rest only. The full tree of a Llama 3 file is ~1.7 million nodes that were allocated,
// put in sorted maps and freed again on every load.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::tokenizer {

struct TokenizerJson {
  // The document without model.vocab and model.merges (those keys are absent from it).
  nlohmann::json rest;
  bool has_vocab = false;   // model.vocab was an object
  bool has_merges = false;  // model.merges was an array
  // model.vocab in file order.
  std::vector<std::pair<std::string, int64_t>> vocab;
  // model.merges in file order, each as its two tokens ("a b" strings split at the first space).
  std::vector<std::pair<std::string, std::string>> merges;
};

// Throws InvalidInput naming `source` for malformed JSON, a vocab id that is not a non-negative
// integer, or a merge that is not "a b" or ["a", "b"].
TokenizerJson ReadTokenizerJson(std::string_view text, const std::string& source);

}  // namespace lockstep::tokenizer
