// OpenAI's HTTP API as this server speaks it: a completions or chat-completions request body
// checked and turned into what the coordinator runs (prompt ids, max_tokens, sampling), the text
// of the tokens that come back (end-of-sequence ids and stop strings, streamed whole characters
// at a time), and the JSON of responses, stream chunks and errors. Pure (no I/O, no clock: the
// caller passes `created`); thread-safe for distinct objects.
//
// Field by field (https://platform.openai.com/docs/api-reference): `model` (must be the served
// id: 404 otherwise), `prompt` (completions: a string, a list of token ids, or a list of one of
// either), `messages` (chat: role and content strings, or content as text parts), `max_tokens`
// (`max_completion_tokens` for chat; default 16 for completions, the rest of the context for
// chat), `temperature` [0, 2] (default 1), `top_p` (0, 1], `seed` (the sampling draws; default
// 0, so a request is reproducible), `stop` (a string or up to 4), `n` (1 only), `stream`,
// `stream_options.include_usage`, and two extensions vLLM has too: `ignore_eos`, and every choice
// carries `token_ids`, the generated ids. A malformed body, a missing or wrong-typed field, or a
// prompt + max_tokens beyond the context is an ApiError naming the field (`param`), status 400.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/model/reference.h"
#include "lockstep/tokenizer/tokenizer.h"

namespace lockstep::server {

// An error as OpenAI's API reports one: the HTTP status and
// {"error": {"message", "type", "param", "code"}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "",
           std::string type = "invalid_request_error", std::string code = "");
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  std::string Json() const;  // the response body

 private:
  int status_;
  std::string type_, param_, code_;
};

// What the server serves. `tokenizer` null: prompts must be token ids, responses carry no text.
struct ModelCard {
  std::string id;                                   // the `model` clients name
  int64_t context = 0;                              // prompt + max_tokens may use this many
  int64_t vocab_size = 0;                           // prompt ids must be below it
  const tokenizer::Tokenizer* tokenizer = nullptr;  // not owned; outlives the card's users
  std::vector<int32_t> eos;  // ids that end a generation (the tokenizer's and the model's EOS)
};

enum class Endpoint { kCompletions, kChatCompletions };

struct GenerationRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::vector<int32_t> prompt;
  int64_t max_tokens = 16;
  model::SamplingOptions sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  bool ignore_eos = false;
};

// Checks a request body against the card; throws ApiError (400, or 404 for another model).
GenerationRequest ParseRequest(Endpoint endpoint, std::string_view body, const ModelCard& card);

// The generated tokens of one request as text, token by token: stops at an EOS id (unless
// ignore_eos; the EOS is counted but not shown) and at the first stop string (the text before
// it; text that might begin a stop string is held back until it cannot).
class TextStream {
 public:
  TextStream(const ModelCard& card, const GenerationRequest& request);
  struct Delta {
    std::string text;   // new text to show (may be empty)
    bool stop = false;  // the generation ended here (finish_reason "stop")
  };
  Delta Push(int32_t token);
  // At the end of the tokens (not after a stop): the text still held back.
  std::string Finish();
  const std::string& text() const { return text_; }  // everything shown so far

 private:
  std::string Emit(std::string piece, bool final, bool* stopped);
  const ModelCard& card_;
  const GenerationRequest& request_;
  std::optional<tokenizer::StreamDecoder> decoder_;
  std::string held_, text_;
  bool stopped_ = false;
};

// Response and chunk bodies. `id` like "cmpl-7", `created` in Unix seconds; finish_reason
// "stop" or "length" (empty: null, a chunk in the middle of a stream).
struct Choice {
  std::string text;
  std::vector<int32_t> token_ids;
  std::string finish_reason;
};
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};
std::string ResponseJson(Endpoint endpoint, const std::string& id, int64_t created,
                         const std::string& model, const Choice& choice, const Usage& usage);
// One Server-Sent Event's data: a chunk of the stream (chat: `first` adds the assistant role).
std::string ChunkJson(Endpoint endpoint, const std::string& id, int64_t created,
                      const std::string& model, const Choice& delta, bool first);
// The last chunk when stream_options.include_usage: no choices, the usage.
std::string UsageChunkJson(Endpoint endpoint, const std::string& id, int64_t created,
                           const std::string& model, const Usage& usage);
std::string ModelsJson(const ModelCard& card);

}  // namespace lockstep::server
