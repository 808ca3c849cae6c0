// engine.h: continuous batching. A GenerationEngine owns a KV cache of a fixed number of slots and runs the
// requests started in them step by step: each step reads one prefill chunk of every request still reading its
// prompt, then decodes one token for every request that is generating, all of them in one forward. Requests
// start whenever a slot is free and leave when they finish, so new ones join a batch already decoding.
//
// A request's tokens do not depend on the other requests in the batch: its cache rows are its own, and it
// draws from its own generator, seeded by (params.seed, stream). Single-threaded: the caller (generate() or
// the server's scheduler) serialises start() and step().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "generate/sampling.h"
#include "model/gemma4_model.h"
#include "model/kv_cache.h"

namespace g4 {

struct GenerationParams {
  std::int64_t max_new_tokens = 32;
  std::int64_t min_new_tokens = 0;
  std::vector<std::int64_t> stop_ids;  // end-of-sequence tokens (generation_config.json's eos_token_id)
  SamplingParams sampling;
  std::uint64_t seed = 0;
};

// A one-line g4::Error naming the parameter when `params` is out of range (temperature <= 0 when sampling,
// top_p outside (0, 1], min_p outside [0, 1], top_k < 0, repetition_penalty <= 0).
void check_sampling_params(const SamplingParams& params);
// The same for a whole generation (sampling, min/max new tokens).
void check_generation_params(const GenerationParams& params);

// prompt + max_new_tokens, the tokens a request's slot must hold (a g4::Error when it overflows).
std::int64_t total_length(std::size_t prompt, std::int64_t max_new_tokens);

// `tokens` without the stop tokens of `params` (what a reply's text is decoded from).
std::vector<std::int64_t> without_stop_tokens(const std::vector<std::int64_t>& tokens,
                                              const GenerationParams& params);

enum class FinishReason { stop, length, cancelled };

struct GenerationRequest {
  std::vector<std::int64_t> prompt;  // non-empty, ids inside the vocabulary
  GenerationParams params;
  std::uint64_t stream = 0;  // which generator of params.seed this request draws from
  // Each new token as it is chosen; returning false ends the request (FinishReason::cancelled) with that
  // token as its last.
  std::function<bool(std::int64_t token)> on_token;
  std::function<void(FinishReason reason)> on_finish;
};

class GenerationEngine {
 public:
  // One slot per entry of slot_lengths (the most tokens, prompt and new, a request in it may hold). The
  // model's weights live on `device`'s device in `dtype`; the cache goes there too (allocated here, after an
  // up-front memory check).
  GenerationEngine(const Gemma4Model& model, Allocator& device, DType dtype,
                   const std::vector<std::int64_t>& slot_lengths, std::int64_t prefill_chunk);

  std::int64_t free_slots() const;
  std::int64_t vocab_size() const { return model_.config.text.vocab_size; }
  // Starts `request` in a free slot that can hold it. A g4::Error (nothing started) when the request is
  // invalid or no free slot holds prompt + max_new_tokens.
  void start(GenerationRequest request);
  // One step (see the top of the file); false when no request was running.
  bool step();

 private:
  struct Slot {
    bool busy = false;
    GenerationRequest request;
    std::int64_t read = 0;  // prompt tokens in the cache
    std::vector<std::int64_t> seen, generated;
    std::mt19937_64 rng;
  };
  // Chooses slot s's next token from its logits; finishes the request when it is done.
  void choose(std::size_t s, std::span<float> logits);
  void finish(std::size_t s, FinishReason reason);

  const Gemma4Model& model_;
  std::vector<std::int64_t> slot_lengths_;
  std::int64_t prefill_chunk_;
  KvCache cache_;
  std::vector<Slot> slots_;
};

}  // namespace g4
