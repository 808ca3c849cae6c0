// libFuzzer target: `g4moe serve`'s request bodies (/v1/completions and /v1/chat/completions), then the chat
// rendering of whatever messages parse.
#include "data/chat_template.h"
#include "data/openai_api.h"
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text = g4::fuzz::as_string(data, size);
  g4::fuzz::check_parser([&] { g4::parse_completion_request(g4::parse_json_strict(text, "request body")); });
  return g4::fuzz::check_parser([&] {
    const g4::ApiRequest r = g4::parse_chat_request(g4::parse_json_strict(text, "request body"));
    g4::render_chat(r.messages);
  });
}
