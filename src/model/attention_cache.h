// attention_cache.h: the interface through which attention reads the keys and values of positions an earlier
// forward already saw (generation with a KV cache). model/ calls it; model/kv_cache.h owns the storage and
// its policy (a ring of the window on sliding layers, everything on full layers).
//
// Invariants: a forward with a cache runs B batch rows of S new tokens each, each row continuing one cached
// sequence; `extend` is called once per layer that computes its own K/V (kv_source < 0), in layer order, and
// returns, per row, the earlier keys the layer keeps (consecutive positions ending just before the new
// tokens, in position order) followed by the S new ones. KV-shared layers call nothing: they read what their
// source layer's `extend` returned.
#pragma once

#include <vector>

#include "core/gemma4_config.h"
#include "core/tensor.h"
#include "ops/attention_visibility.h"

namespace g4 {

struct CachedKeys {
  Tensor k, v;                            // [Σ_r (earlier_r + S), Nkv, D], row after row
  std::vector<AttentionVisibility> rows;  // per batch row: S queries after `earlier_r` kept keys
};

class AttentionCache {
 public:
  virtual ~AttentionCache() = default;
  // Stores layer `spec`'s new K and V ([B·S, Nkv, D], row after row, after norms and RoPE) and returns what
  // the layer's queries attend to. The visibility carries spec.window (the cache keeps at least the window).
  virtual CachedKeys extend(const LayerSpec& spec, const Tensor& k_new, const Tensor& v_new) = 0;
};

}  // namespace g4
