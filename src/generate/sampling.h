// sampling.h: choosing the next token from the logits, as transformers 5.17's `generate` does: its logits
// processors in its order (repetition penalty, then the end-of-sequence suppression of min_new_tokens), and
// when sampling its warpers in its order (temperature, top-k, top-p, min-p), then a draw from the softmax.
// Greedy decoding skips the warpers and takes the argmax (the first index among equal maxima, as
// torch.argmax). Filtered tokens get -inf. The draws use our own generator (std::mt19937_64): a seed makes
// g4moe's samples reproducible, not equal to PyTorch's.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace g4 {

struct SamplingParams {
  bool greedy = true;               // false: sample from the warped distribution
  double temperature = 1.0;         // > 0 (greedy decoding ignores it)
  std::int64_t top_k = 0;           // 0: off
  double top_p = 1.0;               // 1: off
  double min_p = 0.0;               // 0: off
  double repetition_penalty = 1.0;  // 1: off; > 1 discourages tokens already in the sequence
};

// Applies the processors and, when sampling, the warpers to `logits` in place. `seen`: the tokens of the
// sequence so far (prompt and generated), for the repetition penalty; `suppressed`: tokens that may not come
// yet (the stop tokens before min_new_tokens).
void process_logits(std::span<float> logits, std::span<const std::int64_t> seen,
                    std::span<const std::int64_t> suppressed, const SamplingParams& params);

// The next token from processed logits: the argmax when greedy, else a draw from softmax(logits).
std::int64_t pick_token(std::span<const float> logits, const SamplingParams& params, std::mt19937_64& rng);

}  // namespace g4
