#include "data/chat_template.h"

#include "core/error.h"

namespace g4 {

namespace {

constexpr const char* kTurn = "<|turn>";
constexpr const char* kEndTurn = "<turn|>";
constexpr const char* kChannel = "<|channel>";
constexpr const char* kEndChannel = "<channel|>";

// `text` without every <|channel>...<channel|> span (an unclosed one runs to the end).
std::string without_thoughts(const std::string& text) {
  std::string out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t open = text.find(kChannel, at);
    if (open == std::string::npos) {
      out += text.substr(at);
      break;
    }
    out += text.substr(at, open - at);
    const std::size_t close = text.find(kEndChannel, open);
    if (close == std::string::npos) break;
    at = close + std::string(kEndChannel).size();
  }
  return out;
}

}  // namespace

std::string render_chat(const std::vector<ChatMessage>& messages, const ChatOptions& options) {
  std::string out = "<bos>";
  std::size_t first = 0;
  const bool system = !messages.empty() && messages[0].role == "system";
  if (system || options.enable_thinking) {
    out += std::string(kTurn) + "system\n";
    if (options.enable_thinking) out += "<|think|>\n";
    if (system) out += messages[0].content;
    out += std::string(kEndTurn) + "\n";
    first = system ? 1 : 0;
  }
  for (std::size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    std::string role = m.role;
    if (role == "system") fail("message ", i, " is a system message: only the first message may be one");
    if (role == "assistant") role = "model";
    check(role == "user" || role == "model", "message ", i, " has role \"", m.role,
          "\" (expected system, user or assistant)");
    const std::string content = role == "model" ? without_thoughts(m.content) : m.content;
    out += std::string(kTurn) + role + "\n" + content + kEndTurn + "\n";
  }
  if (options.add_generation_prompt) out += std::string(kTurn) + "model\n";
  return out;
}

std::string visible_answer(const std::string& generated) {
  std::string text = without_thoughts(generated);
  for (const std::string& end : {std::string(kEndTurn), std::string("<eos>")}) {
    const std::size_t at = text.find(end);
    if (at != std::string::npos) text.resize(at);
  }
  return text;
}

}  // namespace g4
