// cmd_generate.cpp: `g4moe generate --model DIR (--input FILE.json | --prompt TEXT | --chat) --max-new-tokens
// N
// [--min-new-tokens M] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R]
// [--seed S] [--device cpu|cuda] [--json]`: continues prompts with the model (generate/generation.h).
//
// Sampling defaults come from the checkpoint's generation_config.json (as transformers' generate takes them);
// --temperature 0 forces greedy decoding, a positive --temperature forces sampling. Output: with --json one
// line {"output_ids": [[...], ...]} holding only the new tokens of each row (a row's stop token included, as
// transformers returns it); without --json the text of --prompt streams as it is generated, and --input
// rows print one line each. Timing goes to stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/cli_common.h"
#include "core/error.h"
#include "data/chat_template.h"
#include "data/generation_config.h"
#include "data/generation_input.h"
#include "data/tokenizer.h"
#include "generate/generation.h"
#include "io/config.h"
#include "train/model_loading.h"

namespace g4::cli {

namespace {

struct GenerateOptions {
  std::string model, input, prompt, device = "cpu", dtype = "auto";
  std::int64_t prefill_chunk = 512;
  GenerationOverrides overrides;
  bool json = false, chat = false, think = false;
  std::string system;
};

// The text of `tokens` without stop tokens, as a chat shows it (no thought channel).
std::string shown(const Tokenizer& tokenizer, const std::vector<std::int64_t>& tokens,
                  const GenerationParams& p) {
  return visible_answer(tokenizer.decode(without_stop_tokens(tokens, p)));
}

// --chat: a conversation on the terminal; each turn renders the whole conversation with Gemma 4's chat format
// (data/chat_template.h) and streams the answer. An empty line, /exit or end of input ends it.
int run_chat(const Gemma4Model& model, const GenerateOptions& o, const GenerationParams& params,
             Allocator& device, DType dtype) {
  const Tokenizer tokenizer = tokenizer_for_model_dir(o.model);
  const std::int64_t V = model.config.text.vocab_size;
  std::vector<ChatMessage> history;
  if (!o.system.empty()) history.push_back({"system", o.system});
  ChatOptions chat;
  chat.enable_thinking = o.think;
  std::fprintf(stderr, "g4moe chat: type a message; an empty line, /exit or Ctrl-D ends the conversation\n");
  std::string line;
  for (;;) {
    std::printf("you> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty() || line == "/exit") break;
    history.push_back({"user", line});
    const std::vector<std::int64_t> ids = tokenizer.encode(render_chat(history, chat));
    for (const std::int64_t id : ids)
      check(id >= 0 && id < V, "the tokenizer of ", o.model, " gave token id ", id,
            ", outside the model's vocabulary of ", V);
    std::printf("model> ");
    std::vector<std::int64_t> tokens;
    std::string printed;
    const auto out = generate(
        model, {ids}, params, device, dtype,
        [&](std::size_t, std::int64_t token) {
          tokens.push_back(token);
          const std::string text = shown(tokenizer, tokens, params);
          if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
            std::fputs(text.c_str() + printed.size(), stdout);
            std::fflush(stdout);
            printed = text;
          }
        },
        o.prefill_chunk);
    std::printf("\n");
    // The whole answer goes into the context; the chat format drops its thought channel.
    history.push_back({"assistant", tokenizer.decode(without_stop_tokens(out[0], params))});
  }
  std::printf("\n");
  return 0;
}

int run_generate(const GenerateOptions& o) {
  check((o.input.empty() ? 0 : 1) + (o.prompt.empty() ? 0 : 1) + (o.chat ? 1 : 0) == 1,
        "give exactly one of --input FILE.json, --prompt TEXT and --chat");
  const DType dtype = compute_dtype(o.dtype, o.device);
  Allocator& device = device_allocator(o.device, "generate");
  Gemma4Model model = load_gemma4_model(o.model);
  const std::string bad = non_finite_weight(model);
  check(bad.empty(), "weight ", bad, " of ", o.model, " is NaN or infinite: nothing is generated");
  const GenerationParams params = resolve_generation_params(read_generation_defaults(o.model), o.overrides);
  const std::int64_t V = model.config.text.vocab_size;

  place_model(model, device, dtype, "generate");
  if (o.chat) return run_chat(model, o, params, device, dtype);

  std::optional<Tokenizer> tokenizer;
  std::vector<std::vector<std::int64_t>> prompts;
  if (!o.prompt.empty()) {
    tokenizer = tokenizer_for_model_dir(o.model);
    std::vector<std::int64_t> ids{tokenizer->bos};
    const auto body = tokenizer->encode(o.prompt);
    ids.insert(ids.end(), body.begin(), body.end());
    for (const std::int64_t id : ids)
      check(id >= 0 && id < V, "the tokenizer of ", o.model, " gave token id ", id,
            ", outside the model's vocabulary of ", V);
    prompts.push_back(std::move(ids));
  } else {
    prompts = read_generation_input(o.input, V);
  }

  // Streams --prompt's text: the decoded text of the new tokens grows; print what was not printed yet.
  std::string printed;
  std::vector<std::int64_t> streamed;
  const bool stream = tokenizer && !o.json;
  const TokenCallback on_token = [&](std::size_t, std::int64_t token) {
    if (!stream) return;
    streamed.push_back(token);
    const std::string text = tokenizer->decode(streamed);
    if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
      std::fputs(text.c_str() + printed.size(), stdout);
      std::fflush(stdout);
      printed = text;
    }
  };
  if (stream) {
    std::fputs(o.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  const auto start = std::chrono::steady_clock::now();
  const auto out = generate(model, prompts, params, device, dtype, on_token, o.prefill_chunk);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::size_t prompt_tokens = 0, new_tokens = 0;
  for (std::size_t r = 0; r < out.size(); ++r)
    prompt_tokens += prompts[r].size(), new_tokens += out[r].size();

  if (o.json) {
    Json line = {{"output_ids", out}};
    if (tokenizer) line["text"] = tokenizer->decode(out[0]);
    // Invalid UTF-8 (a lone byte-fallback token) becomes U+FFFD, as transformers' decode does.
    std::printf("%s\n", line.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
  } else if (stream) {
    std::printf("\n");
  } else {
    for (const auto& row : out) {
      std::string ids;
      for (const std::int64_t id : row) ids += (ids.empty() ? "" : " ") + std::to_string(id);
      std::printf("%s\n", ids.c_str());
    }
  }
  std::fprintf(stderr, "generate: %zu row(s), %zu prompt + %zu new tokens in %.3f s (%.1f new tokens/s)\n",
               out.size(), prompt_tokens, new_tokens, seconds,
               seconds > 0 ? static_cast<double>(new_tokens) / seconds : 0.0);
  return 0;
}

}  // namespace

Action register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "generate",
      "Continue prompts with the model, with a KV cache (sliding layers keep only their window). Sampling "
      "follows transformers' generate: the checkpoint's generation_config.json gives the defaults "
      "(do_sample, temperature, top_k, top_p, min_p, repetition_penalty, eos_token_id), the options below "
      "override them. A row stops after a stop token (eos_token_id, kept in the output) or "
      "--max-new-tokens.");
  auto o = std::make_shared<GenerateOptions>();
  cmd->add_option("--model", o->model, "checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option("--input", o->input,
                  "JSON file {\"input_ids\": [[...], ...]}: one prompt per row, rows may differ in length");
  cmd->add_option("--prompt", o->prompt,
                  "a text prompt, tokenised with the checkpoint's tokenizer.json (BOS first); the "
                  "continuation streams to stdout");
  cmd->add_option("--max-new-tokens", o->overrides.max_new_tokens, "new tokens per row at most (>= 1)")
      ->required();
  cmd->add_option("--min-new-tokens", o->overrides.min_new_tokens,
                  "stop tokens cannot come before this many new tokens (default 0)");
  cmd->add_option("--temperature", o->overrides.temperature,
                  "0: greedy decoding; > 0: sample at this temperature (default: generation_config.json, "
                  "else greedy)");
  cmd->add_option("--top-k", o->overrides.top_k,
                  "sample among the k most likely tokens (0: off; default: "
                  "generation_config.json, else 50)");
  cmd->add_option("--top-p", o->overrides.top_p,
                  "nucleus sampling: the smallest set holding this probability (1: off)");
  cmd->add_option("--min-p", o->overrides.min_p,
                  "drop tokens less likely than min_p times the most likely one (0: off)");
  cmd->add_option("--repetition-penalty", o->overrides.repetition_penalty,
                  "divide positive (multiply negative) logits of tokens already present (1: off)");
  cmd->add_option("--seed", o->overrides.seed,
                  "seed of the sampling (each row draws from its own generator; default 0)");
  cmd->add_flag("--ignore-eos", o->overrides.ignore_eos,
                "do not stop at eos_token_id (always --max-new-tokens)");
  cmd->add_option("--prefill-chunk", o->prefill_chunk,
                  "prompt tokens per forward while filling the KV cache (default 512)");
  cmd->add_option("--device", o->device, "cpu (default) or cuda (one GPU)");
  cmd->add_option("--dtype", o->dtype, "compute dtype: auto (f32 on cpu, bf16 on cuda), f32, or bf16 (cuda)");
  cmd->add_flag("--chat", o->chat,
                "a conversation on the terminal in Gemma 4's chat format (the checkpoint's tokenizer.json); "
                "an empty line, /exit or Ctrl-D ends it");
  cmd->add_option("--system", o->system, "with --chat: a system message first");
  cmd->add_flag("--think", o->think,
                "with --chat: thinking on (the model may reason in its thought channel, "
                "which is not shown and not kept in the conversation)");
  cmd->add_flag("--json", o->json,
                "print one line {\"output_ids\": [[...], ...]} with the new tokens of each row (and \"text\" "
                "for --prompt)");
  return [o] { return run_generate(*o); };
}

}  // namespace g4::cli
