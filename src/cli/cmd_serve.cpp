// cmd_serve.cpp: `g4moe serve --model DIR [--host H] [--port P] [--max-batch N] [--max-context T]
// [--device cpu|cuda]`: the OpenAI-compatible HTTP server of serve/server.h over a continuous-batching engine
// with N slots of T tokens (the KV cache is sized for all of them up front).
#include <filesystem>
#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"
#include "data/generation_config.h"
#include "data/tokenizer.h"
#include "generate/engine.h"
#include "serve/server.h"
#include "train/model_loading.h"

namespace g4::cli {

namespace {

ServerOptions default_server_options() {
  ServerOptions o;
  o.max_context = 4096;
  return o;
}

struct ServeOptions {
  std::string model, device = "cpu", dtype = "auto";
  std::int64_t max_batch = 8, prefill_chunk = 512;
  ServerOptions server = default_server_options();
};

int run_serve(ServeOptions o) {
  const DType dtype = compute_dtype(o.dtype, o.device);
  check(o.max_batch >= 1, "--max-batch must be >= 1, got ", o.max_batch);
  check(o.server.threads >= 1, "--threads must be >= 1");
  Allocator& device = device_allocator(o.device, "serve");
  Gemma4Model model = load_gemma4_model(o.model);
  const std::string bad = non_finite_weight(model);
  check(bad.empty(), "weight ", bad, " of ", o.model, " is NaN or infinite: nothing is served");
  const Tokenizer tokenizer = tokenizer_for_model_dir(o.model);
  const GenerationDefaults defaults = read_generation_defaults(o.model);
  check(o.server.max_context >= 2, "--max-context must be >= 2 tokens, got ", o.server.max_context);
  if (o.server.model_name.empty())
    o.server.model_name = std::filesystem::path(o.model).lexically_normal().filename().string();
  if (o.server.model_name.empty()) o.server.model_name = "g4moe";
  place_model(model, device, dtype, "serve");
  GenerationEngine engine(
      model, device, dtype,
      std::vector<std::int64_t>(static_cast<std::size_t>(o.max_batch), o.server.max_context),
      o.prefill_chunk);
  return serve(engine, tokenizer, defaults, o.server);
}

}  // namespace

Action register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve the model over HTTP with an OpenAI-compatible API: POST /v1/completions and "
      "/v1/chat/completions (\"stream\": true for server-sent events; max_tokens, temperature, top_p, top_k, "
      "min_p, repetition_penalty, stop, seed), GET /v1/models, GET /health. Requests are batched "
      "continuously (new ones join the batch while others decode); up to --queue more wait for a slot, "
      "beyond that the answer is 503. Sampling defaults come from the checkpoint's generation_config.json. "
      "Ctrl-C or SIGTERM stops it after the running requests.");
  auto o = std::make_shared<ServeOptions>();
  cmd->add_option("--model", o->model, "checkpoint directory (config.json, safetensors, tokenizer.json)")
      ->required();
  cmd->add_option("--host", o->server.host, "address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", o->server.port, "port (default 8000; 0: any free port, printed on stderr)");
  cmd->add_option("--model-name", o->server.model_name,
                  "the model id the API reports (default: the directory name)");
  cmd->add_option("--max-batch", o->max_batch, "requests generating at once: KV-cache slots (default 8)");
  cmd->add_option(
      "--max-context", o->server.max_context,
      "tokens per request, prompt and completion (default 4096); the KV cache holds --max-batch of "
      "these, allocated at start");
  cmd->add_option("--max-tokens", o->server.default_max_tokens,
                  "completion tokens when a request gives no max_tokens (default 256)");
  cmd->add_option("--queue", o->server.queue_limit, "requests waiting for a slot before 503 (default 64)");
  cmd->add_option("--threads", o->server.threads, "HTTP worker threads: concurrent connections (default 16)");
  cmd->add_option("--prefill-chunk", o->prefill_chunk,
                  "prompt tokens per forward while filling the cache (default 512)");
  cmd->add_option("--device", o->device, "cpu (default) or cuda (one GPU)");
  cmd->add_option("--dtype", o->dtype, "compute dtype: auto (f32 on cpu, bf16 on cuda), f32, or bf16 (cuda)");
  return [o] { return run_serve(*o); };
}

}  // namespace g4::cli
