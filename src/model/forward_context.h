// forward_context.h: what every layer of one forward pass shares: the batch, RoPE tables per attention kind
// and what each query sees (built once per pass), the K/V that KV-shared layers read, and the KV cache when
// the batch continues cached sequences (generation).
//
// Visibility follows transformers 5.17 (hf_transformers_gemma4.md §4): causal; sliding layers (window W) see
// the last W keys, the query's own included; a 2-D attention_mask masks keys only; packed sequences (no
// attention_mask, explicit position_ids) start a new segment wherever pos[t] - pos[t-1] != 1, and a query
// sees only keys of its own segment.
#pragma once

#include <map>
#include <vector>

#include "core/batch.h"
#include "core/gemma4_config.h"
#include "core/tensor.h"
#include "model/attention_cache.h"
#include "moe/dispatcher.h"
#include "ops/attention_visibility.h"
#include "ops/rope_table.h"

namespace g4 {

struct ForwardContext {
  const TextConfig* config = nullptr;
  const Batch* batch = nullptr;
  std::map<AttentionKind, RopeTable> rope;          // [T, head_dim] per kind
  std::vector<std::vector<std::int64_t>> segments;  // per row: [S] segment ids when the batch is packed
  // per row: [S] the end of the image block each position lies in, or -1 (use_bidirectional_attention
  // "vision" with image tokens in the batch; sliding layers only, hf_transformers_gemma4.md §4.3)
  std::vector<std::vector<std::int64_t>> image_block_end;
  std::map<AttentionKind, std::pair<Tensor, Tensor>> shared_kv;       // K, V [T, Nkv, D] of the storing layer
  std::map<AttentionKind, std::pair<Tensor, Tensor>> shared_kv_grad;  // backward: dK, dV accumulated for it
  const Dispatcher<float>* dispatcher = nullptr;  // the MoE blocks' experts (Gemma4Model::dispatcher)
  // Generation (model/attention_cache.h): the batch continues cached sequences; nullptr for a whole-sequence
  // forward. `cached_shared` holds what each storing layer's extend returned, for the KV-shared layers.
  AttentionCache* cache = nullptr;
  std::map<AttentionKind, CachedKeys> cached_shared;
};

ForwardContext make_forward_context(const TextConfig& config, const Batch& batch);

// What the queries of each batch row see in a layer with sliding window `window` (0: full attention); the
// entries point into ctx and the batch, which must outlive them.
std::vector<AttentionVisibility> attention_rows(const ForwardContext& ctx, int window);

}  // namespace g4
