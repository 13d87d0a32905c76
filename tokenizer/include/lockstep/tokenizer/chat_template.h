// lockstep::tokenizer::ChatTemplate — a Hugging Face chat template (the Jinja `chat_template` of
// tokenizer_config.json) rendered as transformers' apply_chat_template renders it.
//
// The interpreter covers the Jinja subset chat templates use: text, {{ }}, {% set %} (also
// ns.attr and blocks), {% if/elif/else %}, {% for %} with loop.* / else / a filter, {% macro %},
// {% break/continue %}, comments, whitespace control ({%- -%}) with trim_blocks and lstrip_blocks
// on (as transformers sets them); literals, lists, dicts, tuples, slices, the operators, `is`
// tests, filters (tojson, trim, length, ...), string and dict methods, namespace(), range() and
// raise_exception(). A template using anything else is refused with one line naming the construct
// and its line:column ("tokenizer_config.json: chat_template:3:15: unsupported filter 'wordwrap'
// (supported: ...)"). Rendering is deterministic: no clock, no randomness (strftime_now is not
// offered).
//
// Thread-safety: a parsed ChatTemplate is immutable; Render may run on many threads at once.
// Errors: Parse and Render throw lockstep::Error (kInvalidInput). A template's own
// raise_exception("...") (a conversation the template refuses, e.g. roles that do not alternate)
// is "WHERE:LINE:COLUMN: raise_exception: ...".
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::tokenizer {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

class ChatTemplate {
 public:
  // `where` names the template in errors (e.g. "tokenizer_config.json: chat_template").
  static ChatTemplate Parse(std::string_view source, const std::string& where = "chat_template");

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  // Renders with the variables of `context_json`, a JSON object: "messages" (a list of
  // {"role", "content", ...}), "add_generation_prompt", the special tokens ("bos_token", ...) and
  // whatever else the template reads ("tools", "enable_thinking", ...). Objects keep their key
  // order (tojson prints them in it).
  std::string Render(std::string_view context_json) const;

  // The JSON of `messages` ([{"role": ..., "content": ...}, ...]).
  static std::string MessagesJson(const std::vector<ChatMessage>& messages);

 private:
  struct Impl;
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::tokenizer
