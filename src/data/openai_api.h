// openai_api.h: the OpenAI-compatible request and response bodies of `g4moe serve` (/v1/completions,
// /v1/chat/completions, /v1/models), as plain functions on JSON, apart from HTTP; in data/ with the other
// input formats (serve/ may not read JSON itself).
//
// Invariant: parse_* either returns a request whose fields are in range or throws a one-line g4::Error that
// names the field (the server answers it with 400); unknown fields are ignored, as OpenAI's clients send
// many.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/chat_template.h"
#include "io/json.h"

namespace g4 {

struct ApiRequest {
  bool chat = false;
  std::vector<ChatMessage> messages;     // chat
  std::string prompt_text;               // completions: a string prompt ...
  std::vector<std::int64_t> prompt_ids;  // ... or token ids
  std::optional<std::int64_t> max_tokens;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<std::int64_t> top_k;
  std::optional<std::uint64_t> seed;
  std::vector<std::string> stop;  // at most 4 non-empty strings
  bool stream = false;
  bool include_usage = false;    // stream_options.include_usage
  bool enable_thinking = false;  // chat_template_kwargs.enable_thinking
  bool ignore_eos = false;       // (vLLM's extension) generate max_tokens whatever comes
};

ApiRequest parse_completion_request(const Json& body);
ApiRequest parse_chat_request(const Json& body);

// {"error": {"message": ..., "type": ..., "code": ...}}
Json api_error(const std::string& message, const std::string& type, int code);

struct ApiUsage {
  std::int64_t prompt_tokens = 0, completion_tokens = 0;
};

// A whole response (stream false) and one server-sent-event chunk (stream true; text empty and finish_reason
// set in the last one). finish_reason: "stop" or "length".
Json completion_response(bool chat, const std::string& id, const std::string& model, std::int64_t created,
                         const std::string& text, const std::string& finish_reason, const ApiUsage& usage);
Json completion_chunk(bool chat, const std::string& id, const std::string& model, std::int64_t created,
                      const std::string& text, const std::optional<std::string>& finish_reason, bool first);
Json usage_chunk(bool chat, const std::string& id, const std::string& model, std::int64_t created,
                 const ApiUsage& usage);
Json models_response(const std::string& model, std::int64_t created);

}  // namespace g4
