#include "generate/generation.h"

namespace g4 {

GenerationParams resolve_generation_params(const GenerationDefaults& d, const GenerationOverrides& o) {
  GenerationParams p;
  p.max_new_tokens = o.max_new_tokens;
  p.min_new_tokens = o.min_new_tokens;
  p.seed = o.seed;
  if (!o.ignore_eos) p.stop_ids = d.eos_token_ids;
  SamplingParams& s = p.sampling;
  s.greedy = !d.do_sample.value_or(false);
  s.temperature = d.temperature.value_or(1.0);
  if (o.temperature) {
    s.greedy = *o.temperature == 0;
    if (!s.greedy) s.temperature = *o.temperature;
  }
  s.top_k = o.top_k.value_or(d.top_k.value_or(50));
  s.top_p = o.top_p.value_or(d.top_p.value_or(1.0));
  s.min_p = o.min_p.value_or(d.min_p.value_or(0.0));
  s.repetition_penalty = o.repetition_penalty.value_or(d.repetition_penalty.value_or(1.0));
  return p;
}

std::vector<std::vector<std::int64_t>> generate(const Gemma4Model& model,
                                                const std::vector<std::vector<std::int64_t>>& prompts,
                                                const GenerationParams& params, Allocator& device,
                                                DType dtype, const TokenCallback& on_token,
                                                std::int64_t prefill_chunk) {
  check_generation_params(params);
  std::vector<std::vector<std::int64_t>> out(prompts.size());
  if (prompts.empty()) return out;
  std::vector<std::int64_t> lengths;
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    check(!prompts[r].empty(), "prompt ", r, " is empty: generation needs at least one token to continue");
    lengths.push_back(total_length(prompts[r].size(), params.max_new_tokens));
  }
  GenerationEngine engine(model, device, dtype, lengths, prefill_chunk);
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    GenerationRequest request;
    request.prompt = prompts[r];
    request.params = params;
    request.stream = r;
    request.on_token = [&out, &on_token, r](std::int64_t token) {
      out[r].push_back(token);
      if (on_token) on_token(r, token);
      return true;
    };
    try {
      engine.start(std::move(request));
    } catch (const Error& e) {
      fail("prompt ", r, ": ", e.what());
    }
  }
  while (engine.step()) {
  }
  return out;
}

}  // namespace g4
