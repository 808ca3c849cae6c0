#include "generate/engine.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

std::int64_t total_length(std::size_t prompt, std::int64_t max_new_tokens) {
  const auto n = static_cast<std::int64_t>(prompt);
  check(max_new_tokens <= std::numeric_limits<std::int64_t>::max() - n, "prompt length (", n,
        ") + max_new_tokens (", max_new_tokens, ") overflows");
  return n + max_new_tokens;
}

std::vector<std::int64_t> without_stop_tokens(const std::vector<std::int64_t>& tokens,
                                              const GenerationParams& p) {
  std::vector<std::int64_t> kept;
  for (const std::int64_t t : tokens)
    if (std::find(p.stop_ids.begin(), p.stop_ids.end(), t) == p.stop_ids.end()) kept.push_back(t);
  return kept;
}

void check_sampling_params(const SamplingParams& s) {
  check(s.greedy || (std::isfinite(s.temperature) && s.temperature > 0),
        "temperature must be > 0 when sampling (0 means greedy), got ", s.temperature);
  check(s.top_k >= 0, "top_k must be >= 0 (0: off), got ", s.top_k);
  check(s.top_p > 0 && s.top_p <= 1, "top_p must lie in (0, 1], got ", s.top_p);
  check(s.min_p >= 0 && s.min_p <= 1, "min_p must lie in [0, 1], got ", s.min_p);
  check(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0,
        "repetition_penalty must be > 0 (1: off), got ", s.repetition_penalty);
}

void check_generation_params(const GenerationParams& p) {
  check_sampling_params(p.sampling);
  check(p.max_new_tokens >= 1, "max_new_tokens must be >= 1, got ", p.max_new_tokens);
  check(p.min_new_tokens >= 0 && p.min_new_tokens <= p.max_new_tokens, "min_new_tokens (", p.min_new_tokens,
        ") must lie in [0, max_new_tokens = ", p.max_new_tokens, "]");
}

GenerationEngine::GenerationEngine(const Gemma4Model& model, Allocator& device, DType dtype,
                                   const std::vector<std::int64_t>& slot_lengths, std::int64_t prefill_chunk)
    : model_(model),
      slot_lengths_(slot_lengths),
      prefill_chunk_(prefill_chunk),
      cache_(model.config.text, slot_lengths, device, dtype),
      slots_(slot_lengths.size()) {
  check(prefill_chunk >= 1, "the prefill chunk must be >= 1 token, got ", prefill_chunk);
}

std::int64_t GenerationEngine::free_slots() const {
  return std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.busy; });
}

void GenerationEngine::start(GenerationRequest request) {
  const GenerationParams& p = request.params;
  check_generation_params(p);
  const std::int64_t V = model_.config.text.vocab_size;
  check(!request.prompt.empty(), "the prompt is empty: generation needs at least one token to continue");
  for (const std::int64_t id : request.prompt)
    check(id >= 0 && id < V, "the prompt holds token id ", id, ", outside the vocabulary [0, ", V, ")");
  const std::int64_t needed = total_length(request.prompt.size(), p.max_new_tokens);
  std::size_t s = 0;
  while (s < slots_.size() && (slots_[s].busy || slot_lengths_[s] < needed)) ++s;
  if (s == slots_.size()) {
    const std::int64_t longest =
        slot_lengths_.empty() ? 0 : *std::max_element(slot_lengths_.begin(), slot_lengths_.end());
    check(needed <= longest, "prompt (", request.prompt.size(), " tokens) + max_new_tokens (",
          p.max_new_tokens, ") exceeds the context of ", longest, " tokens");
    fail("no free generation slot");
  }
  Slot& slot = slots_[s];
  std::seed_seq seq{static_cast<std::uint32_t>(p.seed), static_cast<std::uint32_t>(p.seed >> 32),
                    static_cast<std::uint32_t>(request.stream),
                    static_cast<std::uint32_t>(request.stream >> 32)};
  slot.rng.seed(seq);
  slot.seen = request.prompt;
  slot.generated.clear();
  slot.read = 0;
  slot.request = std::move(request);
  slot.busy = true;
  cache_.reset(static_cast<std::int64_t>(s));
}

void GenerationEngine::finish(std::size_t s, FinishReason reason) {
  Slot& slot = slots_[s];
  slot.busy = false;
  cache_.reset(static_cast<std::int64_t>(s));
  if (slot.request.on_finish) slot.request.on_finish(reason);
  slot.request = {};
}

void GenerationEngine::choose(std::size_t s, std::span<float> logits) {
  Slot& slot = slots_[s];
  const GenerationParams& p = slot.request.params;
  const bool early = static_cast<std::int64_t>(slot.generated.size()) < p.min_new_tokens;
  process_logits(logits, slot.seen,
                 early ? std::span<const std::int64_t>(p.stop_ids) : std::span<const std::int64_t>(),
                 p.sampling);
  const std::int64_t token = pick_token(logits, p.sampling, slot.rng);
  slot.generated.push_back(token);
  slot.seen.push_back(token);
  const bool go_on = !slot.request.on_token || slot.request.on_token(token);
  if (!go_on) return finish(s, FinishReason::cancelled);
  if (std::find(p.stop_ids.begin(), p.stop_ids.end(), token) != p.stop_ids.end())
    return finish(s, FinishReason::stop);
  if (static_cast<std::int64_t>(slot.generated.size()) >= p.max_new_tokens) finish(s, FinishReason::length);
}

bool GenerationEngine::step() {
  bool worked = false;
  // Prefill: one chunk of every request still reading its prompt, each in its own forward.
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    Slot& slot = slots_[s];
    const auto n = static_cast<std::int64_t>(slot.request.prompt.size());
    if (!slot.busy || slot.read == n) continue;
    worked = true;
    const std::int64_t count = std::min(prefill_chunk_, n - slot.read);
    const std::vector<std::int64_t> chunk(slot.request.prompt.begin() + slot.read,
                                          slot.request.prompt.begin() + slot.read + count);
    cache_.select({static_cast<std::int64_t>(s)}, count);
    const Tensor logits = gemma4_extend(model_, extension_batch(chunk, {slot.read}, count), cache_);
    cache_.commit();
    slot.read += count;
    if (slot.read < n) continue;
    std::vector<float> row = host_logits(logits);
    choose(s, row);  // the first new token: the slot decodes from the next step on
  }
  // Decode: one token for every generating request, all in one forward.
  std::vector<std::int64_t> rows, tokens, starts;
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    const Slot& slot = slots_[s];
    if (!slot.busy || slot.generated.empty() ||
        cache_.length(static_cast<std::int64_t>(s)) == static_cast<std::int64_t>(slot.seen.size()))
      continue;
    rows.push_back(static_cast<std::int64_t>(s));
    tokens.push_back(slot.generated.back());
    starts.push_back(cache_.length(static_cast<std::int64_t>(s)));
  }
  if (rows.empty()) return worked;
  cache_.select(rows, 1);
  const std::vector<float> logits =
      host_logits(gemma4_extend(model_, extension_batch(tokens, starts, 1), cache_));
  cache_.commit();
  const std::int64_t V = model_.config.text.vocab_size;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::vector<float> row(logits.begin() + static_cast<std::ptrdiff_t>(i) * V,
                           logits.begin() + static_cast<std::ptrdiff_t>(i + 1) * V);
    choose(static_cast<std::size_t>(rows[i]), row);
  }
  return true;
}

}  // namespace g4
