// server.h: `g4moe serve`, an OpenAI-compatible HTTP server (cpp-httplib, Debian's libcpp-httplib-dev) over
// the scheduler of scheduler.h: POST /v1/completions and /v1/chat/completions (server-sent events with
// "stream": true), GET /v1/models and GET /health.
//
// Every request is answered: bad JSON or fields out of range get 400 with an OpenAI error body, a prompt that
// does not fit the context 400, a full queue 503, an engine failure 500; a client that goes away cancels its
// generation. Stop strings end a generation as soon as they appear in the text, and are not returned.
#pragma once

#include <cstdint>
#include <string>

#include "data/generation_config.h"
#include "data/tokenizer.h"
#include "generate/engine.h"

namespace g4 {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;               // 0: any free port (the line on stderr says which)
  std::string model_name;        // the id /v1/models reports and responses carry
  std::int64_t max_context = 0;  // tokens per request, prompt and completion (the engine's slot length)
  std::int64_t default_max_tokens = 256;
  std::size_t queue_limit = 64;  // requests waiting for a slot before 503
  int threads = 16;              // HTTP worker threads (concurrent connections)
};

// Serves until SIGINT or SIGTERM; returns the exit code. `engine` holds the model and the KV-cache slots.
int serve(GenerationEngine& engine, const Tokenizer& tokenizer, const GenerationDefaults& defaults,
          const ServerOptions& options);

}  // namespace g4
