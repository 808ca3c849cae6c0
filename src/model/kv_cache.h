// kv_cache.h: the KV cache of generation, the storage behind model/attention_cache.h. It lives in model/,
// next to the interface, because it is device storage filled through the op interface, which generate/ may
// not call; generate/ sizes it and drives it.
//
// Per sequence and per layer that computes its own K/V (KV-shared layers store nothing: they read their
// source's), K and V buffers [capacity, Nkv, D] in the compute dtype on the model's device:
//   - sliding layers: capacity = min(window, the sequence's maximum length), a ring (position p in slot
//     p mod capacity): the window is all a later query can see;
//   - full layers: capacity = the sequence's maximum length (prompt + new tokens).
// Everything is allocated up front by the constructor, so a request that cannot fit fails before any work.
// Invariant: after commit(), every kept layer of sequence s holds positions [length(s) - kept, length(s)).
#pragma once

#include <cstdint>
#include <vector>

#include "core/allocator.h"
#include "core/gemma4_config.h"
#include "model/attention_cache.h"

namespace g4 {

class KvCache final : public AttentionCache {
 public:
  // One sequence per entry of max_lengths (each at least 1 token), on `allocator`'s device in `dtype`.
  KvCache(const TextConfig& config, const std::vector<std::int64_t>& max_lengths, Allocator& allocator,
          DType dtype);
  // The bytes those buffers take (checked arithmetic: a g4::Error on overflow).
  static std::uint64_t bytes_needed(const TextConfig& config, const std::vector<std::int64_t>& max_lengths,
                                    DType dtype);

  // The next forward's rows: row r continues sequence sequences[r] with `new_per_row` tokens (whose
  // positions are length(sequences[r]) + 0 .. new_per_row - 1). The new lengths must fit the maxima.
  void select(std::vector<std::int64_t> sequences, std::int64_t new_per_row);
  // After the forward: each selected sequence has grown by new_per_row.
  void commit();
  // Empties a sequence (its buffers are kept for the next one: a slot of continuous batching).
  void reset(std::int64_t sequence) { lengths_.at(static_cast<std::size_t>(sequence)) = 0; }
  std::int64_t length(std::int64_t sequence) const { return lengths_.at(static_cast<std::size_t>(sequence)); }

  CachedKeys extend(const LayerSpec& spec, const Tensor& k_new, const Tensor& v_new) override;

 private:
  struct Slot {
    Tensor k, v;  // [capacity, Nkv, D]
    std::int64_t capacity = 0;
    bool ring = false;
  };
  std::vector<std::vector<Slot>> slots_;  // [sequence][layer] (empty Slot on KV-shared layers)
  std::vector<std::int64_t> lengths_, max_lengths_;
  std::vector<std::int64_t> selected_;
  std::int64_t new_per_row_ = 0;
};

}  // namespace g4
