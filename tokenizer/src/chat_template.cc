#include "lockstep/tokenizer/chat_template.h"

#include "jinja.h"
#include "lockstep/common/error.h"
#include "unicode.h"

namespace lockstep::tokenizer {

struct ChatTemplate::Impl {
  jinja::Program program;
};

ChatTemplate::ChatTemplate(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate ChatTemplate::Parse(std::string_view source, const std::string& where) {
  if (auto bad = FindInvalidUtf8(source)) {
    throw InvalidInput(where + ": not valid UTF-8 (byte " + std::to_string(*bad) + ")");
  }
  auto impl = std::make_unique<Impl>();
  impl->program.where = where;
  impl->program.source = std::string(source);
  jinja::Parse(impl->program);
  return ChatTemplate(std::move(impl));
}

std::string ChatTemplate::Render(std::string_view context_json) const {
  const auto j = nlohmann::ordered_json::parse(context_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw InvalidInput(impl_->program.where + ": the context must be a JSON object");
  }
  if (auto bad = FindInvalidUtf8(context_json)) {
    throw InvalidInput("chat messages are not valid UTF-8 (byte " + std::to_string(*bad) + ")");
  }
  return jinja::Render(impl_->program, jinja::FromJson(j));
}

std::string ChatTemplate::MessagesJson(const std::vector<ChatMessage>& messages) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) {
    for (const std::string* s : {&m.role, &m.content}) {
      if (auto bad = FindInvalidUtf8(*s)) {
        throw InvalidInput("a chat message is not valid UTF-8 (byte " + std::to_string(*bad) + ")");
      }
    }
    a.push_back({{"role", m.role}, {"content", m.content}});
  }
  return a.dump();
}

}  // namespace lockstep::tokenizer
