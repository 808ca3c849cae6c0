#include "data/openai_api.h"

#include <cmath>

#include "core/error.h"

namespace g4 {

namespace {

const std::string kWhere = "request body";

template <class T, class Read>
void optional_field(const Json& body, const char* key, std::optional<T>& out, Read read) {
  const auto it = body.find(key);
  if (it != body.end() && !it->is_null()) out = read(*it, key);
}

// The fields both endpoints share.
ApiRequest parse_common(const Json& body) {
  check(body.is_object(), "the request body must be a JSON object");
  ApiRequest r;
  const auto number = [](const Json& v, const char* key) {
    const double x = json_number(v, key, kWhere);
    check(std::isfinite(x), "\"", key, "\" must be finite");
    return x;
  };
  const auto integer = [](const Json& v, const char* key) { return json_int(v, key, kWhere); };
  optional_field(body, "max_tokens", r.max_tokens, integer);
  if (!r.max_tokens) optional_field(body, "max_completion_tokens", r.max_tokens, integer);
  if (r.max_tokens) check(*r.max_tokens >= 1, "\"max_tokens\" must be >= 1, got ", *r.max_tokens);
  optional_field(body, "temperature", r.temperature, number);
  if (r.temperature) check(*r.temperature >= 0 && *r.temperature <= 2, "\"temperature\" must lie in [0, 2]");
  optional_field(body, "top_p", r.top_p, number);
  if (r.top_p) check(*r.top_p > 0 && *r.top_p <= 1, "\"top_p\" must lie in (0, 1]");
  optional_field(body, "min_p", r.min_p, number);
  optional_field(body, "repetition_penalty", r.repetition_penalty, number);
  optional_field(body, "top_k", r.top_k, integer);
  std::optional<std::int64_t> seed;
  optional_field(body, "seed", seed, integer);
  if (seed) r.seed = static_cast<std::uint64_t>(*seed);
  if (const auto it = body.find("n"); it != body.end() && !it->is_null())
    check(json_int(*it, "n", kWhere) == 1, "only \"n\": 1 is supported");
  if (const auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      r.stop.push_back(it->get<std::string>());
    } else {
      check(it->is_array() && it->size() <= 4, "\"stop\" must be a string or a list of at most 4 strings");
      for (const Json& s : *it) r.stop.push_back(json_string(s, "stop", kWhere));
    }
    for (const std::string& s : r.stop) check(!s.empty(), "\"stop\" strings must not be empty");
  }
  if (const auto it = body.find("ignore_eos"); it != body.end() && !it->is_null())
    r.ignore_eos = json_bool(*it, "ignore_eos", kWhere);
  if (const auto it = body.find("stream"); it != body.end() && !it->is_null())
    r.stream = json_bool(*it, "stream", kWhere);
  if (const auto it = body.find("stream_options"); it != body.end() && it->is_object())
    if (const auto u = it->find("include_usage"); u != it->end() && !u->is_null())
      r.include_usage = json_bool(*u, "stream_options.include_usage", kWhere);
  return r;
}

}  // namespace

ApiRequest parse_completion_request(const Json& body) {
  ApiRequest r = parse_common(body);
  const Json& prompt = json_require(body, "prompt", kWhere);
  if (prompt.is_string()) {
    r.prompt_text = prompt.get<std::string>();
    check(!r.prompt_text.empty(), "\"prompt\" is empty");
  } else {
    check(prompt.is_array() && !prompt.empty(),
          "\"prompt\" must be a string or a non-empty list of token ids (one prompt per request)");
    for (const Json& id : prompt) r.prompt_ids.push_back(json_int(id, "prompt token id", kWhere));
  }
  return r;
}

ApiRequest parse_chat_request(const Json& body) {
  ApiRequest r = parse_common(body);
  r.chat = true;
  const Json& messages = json_require(body, "messages", kWhere);
  check(messages.is_array() && !messages.empty(), "\"messages\" must be a non-empty list");
  for (const Json& m : messages) {
    check(m.is_object(), "every message must be an object with \"role\" and \"content\"");
    ChatMessage message;
    message.role = json_string(json_require(m, "role", kWhere), "role", kWhere);
    const Json& content = json_require(m, "content", kWhere);
    if (content.is_string()) {
      message.content = content.get<std::string>();
    } else {
      // A list of parts: only text parts are understood.
      check(content.is_array(), "\"content\" must be a string or a list of text parts");
      for (const Json& part : content) {
        check(part.is_object() && part.value("type", "") == "text",
              "only text content parts are supported (images are not)");
        message.content += json_string(json_require(part, "text", kWhere), "text", kWhere);
      }
    }
    r.messages.push_back(std::move(message));
  }
  if (const auto it = body.find("chat_template_kwargs"); it != body.end() && it->is_object())
    if (const auto t = it->find("enable_thinking"); t != it->end() && !t->is_null())
      r.enable_thinking = json_bool(*t, "chat_template_kwargs.enable_thinking", kWhere);
  return r;
}

Json api_error(const std::string& message, const std::string& type, int code) {
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

Json completion_response(bool chat, const std::string& id, const std::string& model, std::int64_t created,
                         const std::string& text, const std::string& finish_reason, const ApiUsage& usage) {
  Json choice = {{"index", 0}, {"finish_reason", finish_reason}, {"logprobs", nullptr}};
  if (chat)
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  else
    choice["text"] = text;
  return {{"id", id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", Json::array({choice})},
          {"usage",
           {{"prompt_tokens", usage.prompt_tokens},
            {"completion_tokens", usage.completion_tokens},
            {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}};
}

Json completion_chunk(bool chat, const std::string& id, const std::string& model, std::int64_t created,
                      const std::string& text, const std::optional<std::string>& finish_reason, bool first) {
  Json choice = {{"index", 0},
                 {"finish_reason", finish_reason ? Json(*finish_reason) : Json(nullptr)},
                 {"logprobs", nullptr}};
  if (chat) {
    Json delta = Json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || !finish_reason) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", Json::array({choice})}};
}

Json usage_chunk(bool chat, const std::string& id, const std::string& model, std::int64_t created,
                 const ApiUsage& usage) {
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", Json::array()},
          {"usage",
           {{"prompt_tokens", usage.prompt_tokens},
            {"completion_tokens", usage.completion_tokens},
            {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}};
}

Json models_response(const std::string& model, std::int64_t created) {
  return {{"object", "list"},
          {"data",
           Json::array({{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "g4moe"}}})}};
}

}  // namespace g4
