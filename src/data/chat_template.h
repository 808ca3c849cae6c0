// chat_template.h: Gemma 4's conversation format, as ../shared/reference/hf_transformers_gemma4.md §6
// describes the released template (text only, no tools):
//   <bos>
//   [<|turn>system\n (<|think|>\n when thinking) SYSTEM TEXT <turn|>\n]   when thinking or a first system
//   turn
//   <|turn>user\n TEXT <turn|>\n  /  <|turn>model\n ANSWER <turn|>\n       for every other message
//   <|turn>model\n                                                      the generation prompt
// An assistant message's thought channel (<|channel>...<channel|>) is dropped from the context of later
// turns. Not yet checked string for string against the released chat_template.jinja (it was not available
// where this was written): tests/data/chat_template_test.cpp pins the format above.
#pragma once

#include <string>
#include <vector>

namespace g4 {

struct ChatMessage {
  std::string role;  // "system" (first message only), "user", "assistant" (also "model")
  std::string content;
};

struct ChatOptions {
  bool add_generation_prompt = true;
  bool enable_thinking = false;
};

// The prompt text (special tokens written out, for a tokenizer that matches them literally). A g4::Error on
// an unknown role or a system message after the first.
std::string render_chat(const std::vector<ChatMessage>& messages, const ChatOptions& options = {});

// What a reply shows: the text without its thought channel and without a trailing end-of-turn marker.
std::string visible_answer(const std::string& generated);

}  // namespace g4
