#include "generate/generation.h"

#include <algorithm>

#include "core/checked_math.h"
#include "core/error.h"
#include "generate/kv_cache.h"

namespace g4 {

namespace {

// Rows of `count` new tokens each, row r continuing at position starts[r].
Batch extension_batch(const std::vector<std::int64_t>& tokens, const std::vector<std::int64_t>& starts,
                      std::int64_t count) {
  Batch b;
  b.batch_size = static_cast<std::int64_t>(starts.size());
  b.seq_len = count;
  b.input_ids = tokens;
  b.labels = tokens;
  for (const std::int64_t start : starts)
    for (std::int64_t t = 0; t < count; ++t) b.position_ids.push_back(start + t);
  return b;
}

std::vector<float> host_logits(const Tensor& logits) {
  const Tensor host = logits.device() == Device::cpu ? logits : logits.to(host_allocator());
  return std::vector<float>(host.f32(), host.f32() + host.numel());
}

}  // namespace

std::vector<std::vector<std::int64_t>> generate(const Gemma4Model& model,
                                                const std::vector<std::vector<std::int64_t>>& prompts,
                                                const GenerationParams& p, Allocator& device, DType dtype,
                                                const TokenCallback& on_token) {
  check_sampling_params(p.sampling);
  check(p.max_new_tokens >= 0, "max_new_tokens must be >= 0, got ", p.max_new_tokens);
  check(p.min_new_tokens >= 0 && p.min_new_tokens <= p.max_new_tokens, "min_new_tokens (", p.min_new_tokens,
        ") must lie in [0, max_new_tokens = ", p.max_new_tokens, "]");
  check(p.prefill_chunk >= 1, "the prefill chunk must be >= 1 token, got ", p.prefill_chunk);
  const std::int64_t V = model.config.text.vocab_size;
  std::vector<std::int64_t> max_lengths;
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    check(!prompts[r].empty(), "prompt ", r, " is empty: generation needs at least one token to continue");
    for (const std::int64_t id : prompts[r])
      check(id >= 0 && id < V, "prompt ", r, " holds token id ", id, ", outside the vocabulary [0, ", V, ")");
    max_lengths.push_back(checked_add(static_cast<std::int64_t>(prompts[r].size()), p.max_new_tokens,
                                      "prompt length + max_new_tokens"));
  }
  std::vector<std::vector<std::int64_t>> out(prompts.size());
  if (prompts.empty() || p.max_new_tokens == 0) return out;
  KvCache cache(model.config.text, max_lengths, device, dtype);

  std::vector<std::vector<std::int64_t>> seen = prompts;
  std::vector<std::mt19937_64> rngs;
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    std::seed_seq seq{static_cast<std::uint32_t>(p.seed), static_cast<std::uint32_t>(p.seed >> 32),
                      static_cast<std::uint32_t>(r)};
    rngs.emplace_back(seq);
  }
  std::vector<std::int64_t> active;
  // Chooses row r's next token from its logits; false once the row is finished.
  auto choose = [&](std::size_t r, std::span<float> logits) {
    const bool early = static_cast<std::int64_t>(out[r].size()) < p.min_new_tokens;
    process_logits(logits, seen[r],
                   early ? std::span<const std::int64_t>(p.stop_ids) : std::span<const std::int64_t>(),
                   p.sampling);
    const std::int64_t token = pick_token(logits, p.sampling, rngs[r]);
    out[r].push_back(token);
    seen[r].push_back(token);
    if (on_token) on_token(r, token);
    const bool stop = std::find(p.stop_ids.begin(), p.stop_ids.end(), token) != p.stop_ids.end();
    return !stop && static_cast<std::int64_t>(out[r].size()) < p.max_new_tokens;
  };

  for (std::size_t r = 0; r < prompts.size(); ++r) {
    const auto& prompt = prompts[r];
    const auto n = static_cast<std::int64_t>(prompt.size());
    Tensor logits;
    for (std::int64_t first = 0; first < n; first += p.prefill_chunk) {
      const std::int64_t count = std::min(p.prefill_chunk, n - first);
      cache.select({static_cast<std::int64_t>(r)}, count);
      const std::vector<std::int64_t> chunk(prompt.begin() + first, prompt.begin() + first + count);
      logits = gemma4_extend(model, extension_batch(chunk, {first}, count), cache);
      cache.commit();
    }
    std::vector<float> row = host_logits(logits);
    if (choose(r, row)) active.push_back(static_cast<std::int64_t>(r));
  }

  while (!active.empty()) {
    std::vector<std::int64_t> tokens, starts;
    for (const std::int64_t r : active) {
      tokens.push_back(out[r].back());
      starts.push_back(cache.length(r));
    }
    cache.select(active, 1);
    const std::vector<float> logits =
        host_logits(gemma4_extend(model, extension_batch(tokens, starts, 1), cache));
    cache.commit();
    std::vector<std::int64_t> still;
    for (std::size_t i = 0; i < active.size(); ++i) {
      std::vector<float> row(logits.begin() + static_cast<std::ptrdiff_t>(i) * V,
                             logits.begin() + static_cast<std::ptrdiff_t>(i + 1) * V);
      if (choose(static_cast<std::size_t>(active[i]), row)) still.push_back(active[i]);
    }
    active = std::move(still);
  }
  return out;
}

}  // namespace g4
