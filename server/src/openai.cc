#include "lockstep/server/openai.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "lockstep/common/error.h"

namespace lockstep::server {
namespace {

using nlohmann::json;

ApiError Bad(const std::string& param, const std::string& message) {
  return ApiError(400, message, param);
}

// A JSON type's name as a client would write it.
std::string TypeName(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

std::string Short(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

double Number(const json& body, const std::string& name, double fallback, double lo, double hi,
              bool lo_open) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  const json& v = body[name];
  if (!v.is_number()) throw Bad(name, "'" + name + "' must be a number, got " + TypeName(v));
  const double x = v.get<double>();
  if (!(lo_open ? x > lo : x >= lo) || !(x <= hi)) {
    throw Bad(name, "'" + name + "' must be in " + (lo_open ? "(" : "[") + Short(lo) + ", " +
                        Short(hi) + "], got " + v.dump());
  }
  return x;
}

bool Bool(const json& body, const std::string& name) {
  if (!body.contains(name) || body[name].is_null()) return false;
  if (!body[name].is_boolean()) {
    throw Bad(name, "'" + name + "' must be a boolean, got " + TypeName(body[name]));
  }
  return body[name].get<bool>();
}

std::optional<int64_t> Integer(const json& body, const std::string& name) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  const json& v = body[name];
  if (!v.is_number_integer()) {
    throw Bad(name, "'" + name + "' must be an integer, got " + TypeName(v) +
                        (v.is_number() ? " " + v.dump() : ""));
  }
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX}) {
    throw Bad(name, "'" + name + "' is too large: " + v.dump());
  }
  return v.get<int64_t>();
}

std::vector<int32_t> TokenIds(const json& list, const ModelCard& card, const std::string& param) {
  std::vector<int32_t> ids;
  for (const json& t : list) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= card.vocab_size) {
      throw Bad(param, "'" + param + "' token ids must be integers in [0, " +
                           std::to_string(card.vocab_size) + "), got " + t.dump());
    }
    ids.push_back(t.get<int32_t>());
  }
  return ids;
}

std::vector<int32_t> Encode(const ModelCard& card, const std::string& text, bool special,
                            const std::string& param) {
  if (card.tokenizer == nullptr) {
    throw Bad(param, "this server has no tokenizer (lockstep serve --tokenizer DIR): give '" +
                         param + "' as token ids");
  }
  std::vector<int32_t> ids = card.tokenizer->Encode(text, special);
  for (int32_t id : ids) {
    if (id >= card.vocab_size) {
      throw ApiError(500,
                     "the tokenizer gives id " + std::to_string(id) +
                         ", outside the model's vocabulary of " + std::to_string(card.vocab_size),
                     param, "server_error");
    }
  }
  return ids;
}

std::vector<int32_t> CompletionPrompt(const json& body, const ModelCard& card) {
  if (!body.contains("prompt")) throw Bad("prompt", "'prompt' is required");
  json p = body["prompt"];
  // A list of one prompt (a string or a list of ids) is that prompt; more is a batch.
  if (p.is_array() && p.size() == 1 && (p[0].is_string() || p[0].is_array())) p = p[0];
  if (p.is_array() && !p.empty() && (p[0].is_string() || p[0].is_array())) {
    throw Bad("prompt", "one prompt per request: got a list of " + std::to_string(p.size()));
  }
  std::vector<int32_t> ids;
  if (p.is_string()) {
    ids = Encode(card, p.get<std::string>(), /*special=*/true, "prompt");
  } else if (p.is_array()) {
    ids = TokenIds(p, card, "prompt");
  } else {
    throw Bad("prompt",
              "'prompt' must be a string or a list of token ids, got " + TypeName(body["prompt"]));
  }
  if (ids.empty()) throw Bad("prompt", "'prompt' must give at least one token");
  return ids;
}

std::vector<int32_t> ChatPrompt(const json& body, const ModelCard& card) {
  if (!body.contains("messages")) throw Bad("messages", "'messages' is required");
  const json& m = body["messages"];
  if (!m.is_array() || m.empty()) {
    throw Bad("messages", "'messages' must be a non-empty list of {role, content}");
  }
  json messages = json::array();
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m[i].is_object()) throw Bad(where, "'" + where + "' must be an object");
    if (!m[i].contains("role") || !m[i]["role"].is_string()) {
      throw Bad(where + ".role", "'" + where + ".role' must be a string");
    }
    json msg = m[i];
    const json content = m[i].contains("content") ? m[i]["content"] : json();
    if (content.is_array()) {  // text parts, joined
      std::string text;
      for (const json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          throw Bad(where + ".content",
                    "'" + where + ".content' parts must be {\"type\": \"text\", \"text\": ...}");
        }
        text += part["text"].get<std::string>();
      }
      msg["content"] = text;
    } else if (!content.is_string()) {
      throw Bad(where + ".content",
                "'" + where + ".content' must be a string or text parts, got " + TypeName(content));
    }
    messages.push_back(std::move(msg));
  }
  if (card.tokenizer == nullptr) {
    throw Bad(
        "messages",
        "chat completions need a tokenizer with a chat template (lockstep serve --tokenizer)");
  }
  std::string prompt;
  try {
    prompt = card.tokenizer->ApplyChatTemplate(messages.dump(), /*add_generation_prompt=*/true);
  } catch (const Error& e) {
    throw Bad("messages", std::string("the chat template: ") + e.what());
  }
  // The template writes BOS and its other special tokens itself.
  std::vector<int32_t> ids = Encode(card, prompt, /*special=*/false, "messages");
  if (ids.empty()) throw Bad("messages", "the chat template rendered no tokens");
  return ids;
}

json ChoiceJson(Endpoint endpoint, const Choice& c, bool chunk, bool first) {
  json j = {{"index", 0}};
  const json reason = c.finish_reason.empty() ? json() : json(c.finish_reason);
  if (endpoint == Endpoint::kCompletions) {
    j["text"] = c.text;
    j["logprobs"] = nullptr;
  } else if (chunk) {
    j["delta"] = json::object();
    if (first) j["delta"]["role"] = "assistant";
    if (!c.text.empty() || !first) j["delta"]["content"] = c.text;
    j["logprobs"] = nullptr;
  } else {
    j["message"] = {{"role", "assistant"}, {"content", c.text}};
    j["logprobs"] = nullptr;
  }
  j["finish_reason"] = reason;
  j["token_ids"] = c.token_ids;
  return j;
}

json Envelope(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
              bool chunk) {
  const char* object = endpoint == Endpoint::kCompletions ? "text_completion"
                       : chunk                            ? "chat.completion.chunk"
                                                          : "chat.completion";
  return {{"id", id},
          {"object", object},
          {"created", created},
          {"model", model},
          {"system_fingerprint", "lockstep"}};
}

json UsageJson(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

}  // namespace

ApiError::ApiError(int status, std::string message, std::string param, std::string type,
                   std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      type_(std::move(type)),
      param_(std::move(param)),
      code_(std::move(code)) {}

std::string ApiError::Json() const {
  const json param = param_.empty() ? json() : json(param_);
  const json code = code_.empty() ? json() : json(code_);
  return json{{"error", {{"message", what()}, {"type", type_}, {"param", param}, {"code", code}}}}
      .dump();
}

GenerationRequest ParseRequest(Endpoint endpoint, std::string_view body_text,
                               const ModelCard& card) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::parse_error& e) {
    throw Bad("", std::string("the body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw Bad("", "the body must be a JSON object, got " + TypeName(body));
  if (!body.contains("model"))
    throw Bad("model", "'model' is required (this server serves '" + card.id + "')");
  if (!body["model"].is_string()) {
    throw Bad("model", "'model' must be a string, got " + TypeName(body["model"]));
  }
  if (body["model"].get<std::string>() != card.id) {
    throw ApiError(404,
                   "the model '" + body["model"].get<std::string>() +
                       "' does not exist; this server serves '" + card.id + "'",
                   "model", "invalid_request_error", "model_not_found");
  }
  GenerationRequest r;
  r.endpoint = endpoint;
  r.prompt =
      endpoint == Endpoint::kCompletions ? CompletionPrompt(body, card) : ChatPrompt(body, card);
  if (std::optional<int64_t> n = Integer(body, "n"); n && *n != 1) {
    throw Bad("n", "'n' must be 1 (one choice per request), got " + std::to_string(*n));
  }
  std::optional<int64_t> max = Integer(body, "max_tokens");
  const char* max_name = "max_tokens";
  if (endpoint == Endpoint::kChatCompletions && !max) {
    max = Integer(body, "max_completion_tokens");
    max_name = "max_completion_tokens";
  }
  const int64_t prompt_len = static_cast<int64_t>(r.prompt.size());
  if (max && *max < 0) throw Bad(max_name, std::string("'") + max_name + "' must be >= 0");
  if (card.context > 0 && prompt_len >= card.context && !(max && *max == 0)) {
    throw Bad("prompt", "the prompt is " + std::to_string(prompt_len) +
                            " tokens; this model's maximum context length is " +
                            std::to_string(card.context) + " tokens");
  }
  r.max_tokens = max ? *max
                 : endpoint == Endpoint::kCompletions
                     ? int64_t{16}
                     : (card.context > 0 ? card.context - prompt_len : int64_t{16});
  if (card.context > 0 && prompt_len + r.max_tokens > card.context) {
    throw Bad(max_name, "this model's maximum context length is " + std::to_string(card.context) +
                            " tokens; you requested " + std::to_string(prompt_len + r.max_tokens) +
                            " (" + std::to_string(prompt_len) + " in the prompt, " +
                            std::to_string(r.max_tokens) + " for the completion)");
  }
  r.sampling.temperature = Number(body, "temperature", 1.0, 0.0, 2.0, false);
  r.sampling.top_p = Number(body, "top_p", 1.0, 0.0, 1.0, true);
  if (std::optional<int64_t> seed = Integer(body, "seed")) {
    if (*seed < 0) throw Bad("seed", "'seed' must be >= 0");
    r.sampling.seed = static_cast<uint64_t>(*seed);
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    const json list = s.is_string() ? json::array({s}) : s;
    if (!list.is_array() || list.size() > 4) {
      throw Bad("stop", "'stop' must be a string or a list of up to 4 strings");
    }
    for (const json& one : list) {
      if (!one.is_string() || one.get<std::string>().empty()) {
        throw Bad("stop", "'stop' must hold non-empty strings, got " + one.dump());
      }
      r.stop.push_back(one.get<std::string>());
    }
    if (card.tokenizer == nullptr && !r.stop.empty()) {
      throw Bad("stop", "'stop' strings need a tokenizer (lockstep serve --tokenizer)");
    }
  }
  r.stream = Bool(body, "stream");
  r.ignore_eos = Bool(body, "ignore_eos");
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& o = body["stream_options"];
    if (!o.is_object()) throw Bad("stream_options", "'stream_options' must be an object");
    if (!r.stream) throw Bad("stream_options", "'stream_options' goes with 'stream': true");
    r.include_usage = Bool(o, "include_usage");
  }
  return r;
}

TextStream::TextStream(const ModelCard& card, const GenerationRequest& request)
    : card_(card), request_(request) {
  if (card.tokenizer != nullptr) decoder_.emplace(*card.tokenizer);
}

std::string TextStream::Emit(std::string piece, bool final, bool* stopped) {
  held_ += piece;
  // The first stop string in what is held ends the text before it.
  size_t cut = std::string::npos;
  for (const std::string& s : request_.stop) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    std::string out = held_.substr(0, cut);
    held_.clear();
    *stopped = true;
    text_ += out;
    return out;
  }
  // Keep back the longest tail that could begin a stop string.
  size_t keep = 0;
  if (!final) {
    for (const std::string& s : request_.stop) {
      for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
        if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
          keep = n;
          break;
        }
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  text_ += out;
  return out;
}

TextStream::Delta TextStream::Push(int32_t token) {
  Delta d;
  if (stopped_) return d;
  if (!request_.ignore_eos &&
      std::find(card_.eos.begin(), card_.eos.end(), token) != card_.eos.end()) {
    // The EOS is not shown; what was held back for a stop string is.
    d.text = Emit(decoder_ ? decoder_->Finish() : std::string(), true, &d.stop);
    d.stop = stopped_ = true;
    return d;
  }
  if (!decoder_) return d;
  d.text = Emit(decoder_->Push(token), false, &d.stop);
  stopped_ = d.stop;
  return d;
}

std::string TextStream::Finish() {
  if (stopped_ || !decoder_) return {};
  bool stopped = false;
  return Emit(decoder_->Finish(), true, &stopped);
}

std::string ResponseJson(Endpoint endpoint, const std::string& id, int64_t created,
                         const std::string& model, const Choice& choice, const Usage& usage) {
  json j = Envelope(endpoint, id, created, model, false);
  j["choices"] = json::array({ChoiceJson(endpoint, choice, false, false)});
  j["usage"] = UsageJson(usage);
  return j.dump();
}

std::string ChunkJson(Endpoint endpoint, const std::string& id, int64_t created,
                      const std::string& model, const Choice& delta, bool first) {
  json j = Envelope(endpoint, id, created, model, true);
  j["choices"] = json::array({ChoiceJson(endpoint, delta, true, first)});
  return j.dump();
}

std::string UsageChunkJson(Endpoint endpoint, const std::string& id, int64_t created,
                           const std::string& model, const Usage& usage) {
  json j = Envelope(endpoint, id, created, model, true);
  j["choices"] = json::array();
  j["usage"] = UsageJson(usage);
  return j.dump();
}

std::string ModelsJson(const ModelCard& card) {
  return json{{"object", "list"},
              {"data", json::array({{{"id", card.id},
                                     {"object", "model"},
                                     {"created", 0},
                                     {"owned_by", "lockstep"},
                                     {"max_model_len", card.context}}})}}
      .dump();
}

}  // namespace lockstep::server
