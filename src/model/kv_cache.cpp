#include "model/kv_cache.h"

#include <algorithm>

#include "core/checked_math.h"
#include "core/error.h"
#include "ops/ops.h"

namespace g4 {

namespace {

// The positions layer `s` keeps for a sequence of at most max_length tokens (0: it stores none).
std::int64_t capacity_of(const LayerSpec& s, std::int64_t max_length) {
  if (s.kv_source >= 0) return 0;
  return s.window > 0 ? std::min<std::int64_t>(s.window, max_length) : max_length;
}

// dst rows [dst_first, +n) = src rows [src_first, +n), on the tensors' device.
void copy_rows(const Tensor& src, std::int64_t src_first, const Tensor& dst, std::int64_t dst_first,
               std::int64_t n) {
  if (n <= 0) return;
  Tensor target = dst.rows(dst_first, n);
  ops::assign_(target, src.rows(src_first, n));
}

}  // namespace

std::uint64_t KvCache::bytes_needed(const TextConfig& c, const std::vector<std::int64_t>& max_lengths,
                                    DType dtype) {
  std::uint64_t total = 0;
  for (const std::int64_t length : max_lengths)
    for (const LayerSpec& s : c.layers) {
      const std::uint64_t row = checked_mul(static_cast<std::uint64_t>(s.num_kv_heads),
                                            static_cast<std::uint64_t>(s.head_dim), "KV cache row");
      const std::uint64_t kv = checked_mul(row, std::uint64_t{2} * dtype_size(dtype), "KV cache row");
      total = checked_add(
          total, checked_mul(kv, static_cast<std::uint64_t>(capacity_of(s, length)), "KV cache"), "KV cache");
    }
  return total;
}

KvCache::KvCache(const TextConfig& c, const std::vector<std::int64_t>& max_lengths, Allocator& allocator,
                 DType dtype)
    : lengths_(max_lengths.size(), 0), max_lengths_(max_lengths) {
  std::int64_t longest = 0;
  for (const std::int64_t length : max_lengths) {
    check(length >= 1, "a generated sequence must hold at least one token (got a maximum of ", length, ")");
    longest = std::max(longest, length);
  }
  require_available(allocator, static_cast<double>(bytes_needed(c, max_lengths, dtype)), "the KV cache",
                    std::to_string(max_lengths.size()) + " sequence(s) of up to " + std::to_string(longest) +
                        " tokens, " + std::string(dtype_name(dtype)));
  for (const std::int64_t length : max_lengths) {
    std::vector<Slot>& layers = slots_.emplace_back(c.layers.size());
    for (const LayerSpec& s : c.layers) {
      Slot& slot = layers[static_cast<std::size_t>(s.index)];
      slot.capacity = capacity_of(s, length);
      if (slot.capacity == 0) continue;
      slot.ring = s.window > 0;
      slot.k = Tensor(dtype, {slot.capacity, s.num_kv_heads, s.head_dim}, allocator);
      slot.v = Tensor(dtype, {slot.capacity, s.num_kv_heads, s.head_dim}, allocator);
    }
  }
}

void KvCache::select(std::vector<std::int64_t> sequences, std::int64_t new_per_row) {
  check(new_per_row >= 1, "KvCache::select: no new tokens");
  for (const std::int64_t s : sequences) {
    check(s >= 0 && s < static_cast<std::int64_t>(lengths_.size()), "KvCache::select: no sequence ", s);
    check(lengths_[s] + new_per_row <= max_lengths_[s], "sequence ", s, " would grow to ",
          lengths_[s] + new_per_row, " tokens, past the ", max_lengths_[s], " its KV cache was sized for");
  }
  selected_ = std::move(sequences);
  new_per_row_ = new_per_row;
}

void KvCache::commit() {
  for (const std::int64_t s : selected_) lengths_[s] += new_per_row_;
  selected_.clear();
}

CachedKeys KvCache::extend(const LayerSpec& spec, const Tensor& k_new, const Tensor& v_new) {
  const std::int64_t S = new_per_row_, B = static_cast<std::int64_t>(selected_.size());
  check(B > 0 && k_new.dim(0) == B * S && v_new.dim(0) == B * S, "KvCache::extend: ", k_new.dim(0),
        " new keys for ", B, " rows of ", S);
  std::vector<std::int64_t> earlier(static_cast<std::size_t>(B));
  std::int64_t total = 0;
  for (std::int64_t r = 0; r < B; ++r) {
    const Slot& slot = slots_[selected_[r]][spec.index];
    earlier[r] = std::min(lengths_[selected_[r]], slot.capacity);
    total += earlier[r] + S;
  }
  CachedKeys out;
  out.k = ops::zeros({total, spec.num_kv_heads, spec.head_dim}, k_new.device(), k_new.dtype());
  out.v = ops::zeros({total, spec.num_kv_heads, spec.head_dim}, k_new.device(), k_new.dtype());
  std::int64_t at = 0;
  for (std::int64_t r = 0; r < B; ++r) {
    Slot& slot = slots_[selected_[r]][spec.index];
    const std::int64_t length = lengths_[selected_[r]], cap = slot.capacity;
    // The kept positions [length - earlier, length), in order: on a ring, two runs of slots at most.
    const std::int64_t oldest = length - earlier[r];
    const std::int64_t first_slot = slot.ring ? oldest % cap : oldest;
    const std::int64_t run = std::min(earlier[r], cap - first_slot);
    for (const auto& [kept, dst] : {std::pair{slot.k, out.k}, std::pair{slot.v, out.v}}) {
      copy_rows(kept, first_slot, dst, at, run);
      copy_rows(kept, 0, dst, at + run, earlier[r] - run);
    }
    copy_rows(k_new, r * S, out.k, at + earlier[r], S);
    copy_rows(v_new, r * S, out.v, at + earlier[r], S);
    // Store the new positions [length, length + S): on a ring only the last `cap` of them.
    const std::int64_t skip = slot.ring ? std::max<std::int64_t>(0, S - cap) : 0;
    for (std::int64_t p = length + skip; p < length + S;) {
      const std::int64_t slot_index = slot.ring ? p % cap : p;
      const std::int64_t n = std::min(length + S - p, cap - slot_index);
      copy_rows(k_new, r * S + (p - length), slot.k, slot_index, n);
      copy_rows(v_new, r * S + (p - length), slot.v, slot_index, n);
      p += n;
    }
    AttentionVisibility& vis = out.rows.emplace_back();
    vis.queries = S;
    vis.keys = earlier[r] + S;
    vis.query_offset = earlier[r];
    vis.window = spec.window;
    at += earlier[r] + S;
  }
  return out;
}

}  // namespace g4
