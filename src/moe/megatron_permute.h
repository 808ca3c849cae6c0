// megatron_permute.h: Megatron's token permute / unpermute pair (NeMo moe/megatron/moe_utils.py, the note's
// §6.5–6.6), unfused reference semantics, on the CPU.
//
// routing_map [N, E] (nonzero = token n goes to expert e), tokens [N, H], probs [N, E] (optional).
// permute without drop_and_pad: rows are expert-major, ascending token id within an expert;
//   permuted[r] = tokens[sorted_indices[r]], permuted_probs[r] = probs[sorted_indices[r], e(r)].
// permute with drop_and_pad (needs num_out_tokens): capacity = num_out_tokens / E (integer division); every
//   expert gets exactly `capacity` rows: its routed tokens first (ascending id), then non-routed tokens
//   (ascending id) as padding; routed tokens past the capacity are dropped; probs gathered at (token, e).
// unpermute: out[n] = Σ over rows r with sorted_indices[r] = n of permuted[r] (· probs[n, e(r)] when probs
// are
//   given), i.e. every expert copy of a token is summed. Accumulation in double, output in T.
//
// Adjointness: unpermute without probs is the transpose of permute (the backward of one is the other); a test
// checks ⟨permute(x), y⟩ = ⟨x, unpermute(y)⟩.
#pragma once

#include <cstdint>
#include <vector>

namespace g4 {

struct MegatronPermuteOptions {
  bool drop_and_pad = false;
  std::int64_t num_out_tokens = -1;  // required (≥ 0) with drop_and_pad
};

// Returns the row count. permuted_probs may be nullptr (then probs is ignored).
template <class T>
std::int64_t megatron_permute(const T* tokens, std::int64_t N, std::int64_t H,
                              const std::uint8_t* routing_map, std::int64_t E, const T* probs,
                              const MegatronPermuteOptions& opts, std::vector<T>* permuted,
                              std::vector<T>* permuted_probs, std::vector<std::int64_t>* sorted_indices);

// out [N, H] overwritten. probs/routing_map may be nullptr (plain sum); with probs, routing_map is required.
template <class T>
void megatron_unpermute(const T* permuted, const std::int64_t* sorted_indices, std::int64_t rows,
                        std::int64_t N, std::int64_t H, const T* probs, const std::uint8_t* routing_map,
                        std::int64_t E, const MegatronPermuteOptions& opts, T* out);

// Backward of megatron_unpermute with probs: given dout [N, H], d_permuted[r] = dout[n]·p (overwritten) and
// d_probs[n, e] += ⟨dout[n], permuted[r]⟩ for every row r = (n, e) (accumulated; entries of other (n, e)
// untouched). Without probs, d_permuted[r] = dout[n] (permute is unpermute's transpose) and d_probs is not
// touched.
template <class T>
void megatron_unpermute_backward(const T* dout, const T* permuted, const std::int64_t* sorted_indices,
                                 std::int64_t rows, std::int64_t N, std::int64_t H, const T* probs,
                                 const std::uint8_t* routing_map, std::int64_t E,
                                 const MegatronPermuteOptions& opts, T* d_permuted, T* d_probs);

// DeepEP's local step (the note's §7.2.3): top-k indices [T, K] (−1 = none) and probs [T, K] → a multi-hot
// routing map [T, E] and probs [T, E] (0 where not routed). Overwrites both outputs.
template <class T>
void indices_to_multihot(const std::int64_t* indices, const T* probs, std::int64_t tokens, std::int64_t top_k,
                         std::int64_t num_experts, std::uint8_t* routing_map, T* multihot_probs);

// Its backward: d_probs_k[t, k] = d_multihot_probs[t, indices[t, k]] (0 for −1). Overwrites d_probs_k.
template <class T>
void indices_to_multihot_backward(const std::int64_t* indices, const T* d_multihot_probs, std::int64_t tokens,
                                  std::int64_t top_k, std::int64_t num_experts, T* d_probs_k);

}  // namespace g4
