#include "moe/megatron_permute.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace g4 {

namespace {

// The expert of every row, in permute's order.
std::vector<std::int64_t> row_experts(const std::uint8_t* routing_map, std::int64_t N, std::int64_t E,
                                      const MegatronPermuteOptions& opts, std::vector<std::int64_t>* sorted) {
  std::vector<std::int64_t> experts;
  sorted->clear();
  if (opts.drop_and_pad) {
    check(opts.num_out_tokens >= 0, "megatron permute: drop_and_pad needs num_out_tokens");
    const std::int64_t capacity = opts.num_out_tokens / E;
    for (std::int64_t e = 0; e < E; ++e) {
      std::int64_t taken = 0;
      for (int pass = 0; pass < 2 && taken < capacity; ++pass)  // routed tokens first, then padding tokens
        for (std::int64_t n = 0; n < N && taken < capacity; ++n)
          if ((routing_map[n * E + e] != 0) == (pass == 0)) {
            sorted->push_back(n);
            experts.push_back(e);
            ++taken;
          }
    }
  } else {
    for (std::int64_t e = 0; e < E; ++e)
      for (std::int64_t n = 0; n < N; ++n)
        if (routing_map[n * E + e]) {
          sorted->push_back(n);
          experts.push_back(e);
        }
  }
  return experts;
}

}  // namespace

template <class T>
std::int64_t megatron_permute(const T* tokens, std::int64_t N, std::int64_t H,
                              const std::uint8_t* routing_map, std::int64_t E, const T* probs,
                              const MegatronPermuteOptions& opts, std::vector<T>* permuted,
                              std::vector<T>* permuted_probs, std::vector<std::int64_t>* sorted_indices) {
  check(E > 0 && N >= 0 && H >= 0, "megatron permute: bad sizes");
  const std::vector<std::int64_t> experts = row_experts(routing_map, N, E, opts, sorted_indices);
  const std::int64_t rows = static_cast<std::int64_t>(experts.size());
  permuted->resize(static_cast<std::size_t>(rows * H));
  for (std::int64_t r = 0; r < rows; ++r)
    std::memcpy(permuted->data() + r * H, tokens + (*sorted_indices)[r] * H,
                sizeof(T) * static_cast<std::size_t>(H));
  if (permuted_probs) {
    permuted_probs->clear();
    if (probs) {
      permuted_probs->resize(static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r)
        (*permuted_probs)[r] = probs[(*sorted_indices)[r] * E + experts[r]];
    }
  }
  return rows;
}

template <class T>
void megatron_unpermute(const T* permuted, const std::int64_t* sorted_indices, std::int64_t rows,
                        std::int64_t N, std::int64_t H, const T* probs, const std::uint8_t* routing_map,
                        std::int64_t E, const MegatronPermuteOptions& opts, T* out) {
  std::vector<std::int64_t> experts;
  if (probs) {
    check(routing_map != nullptr, "megatron unpermute: probs need the routing map");
    std::vector<std::int64_t> check_sorted;
    experts = row_experts(routing_map, N, E, opts, &check_sorted);
    check(static_cast<std::int64_t>(experts.size()) == rows, "megatron unpermute: ", rows,
          " rows do not match the routing map's ", experts.size());
  }
  std::vector<double> acc(static_cast<std::size_t>(N * H), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t n = sorted_indices[r];
    check(n >= 0 && n < N, "megatron unpermute: row ", r, " names token ", n, " outside [0, ", N, ")");
    const double p = probs ? static_cast<double>(probs[n * E + experts[r]]) : 1.0;
    for (std::int64_t j = 0; j < H; ++j) acc[n * H + j] += p * permuted[r * H + j];
  }
  for (std::int64_t i = 0; i < N * H; ++i) out[i] = static_cast<T>(acc[i]);
}

template <class T>
void megatron_unpermute_backward(const T* dout, const T* permuted, const std::int64_t* sorted_indices,
                                 std::int64_t rows, std::int64_t N, std::int64_t H, const T* probs,
                                 const std::uint8_t* routing_map, std::int64_t E,
                                 const MegatronPermuteOptions& opts, T* d_permuted, T* d_probs) {
  std::vector<std::int64_t> experts;
  if (probs) {
    check(routing_map != nullptr && d_probs != nullptr,
          "megatron unpermute backward: probs need the routing map");
    std::vector<std::int64_t> unused;
    experts = row_experts(routing_map, N, E, opts, &unused);
    check(static_cast<std::int64_t>(experts.size()) == rows,
          "megatron unpermute backward: row count mismatch");
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t n = sorted_indices[r];
    check(n >= 0 && n < N, "megatron unpermute backward: row ", r, " names token ", n, " outside [0, ", N,
          ")");
    const double p = probs ? static_cast<double>(probs[n * E + experts[r]]) : 1.0;
    double dp = 0;
    for (std::int64_t j = 0; j < H; ++j) {
      d_permuted[r * H + j] = static_cast<T>(p * dout[n * H + j]);
      dp += static_cast<double>(dout[n * H + j]) * permuted[r * H + j];
    }
    if (probs) d_probs[n * E + experts[r]] += static_cast<T>(dp);
  }
}

template <class T>
void indices_to_multihot(const std::int64_t* indices, const T* probs, std::int64_t tokens, std::int64_t top_k,
                         std::int64_t num_experts, std::uint8_t* routing_map, T* multihot_probs) {
  std::fill(routing_map, routing_map + tokens * num_experts, std::uint8_t{0});
  std::fill(multihot_probs, multihot_probs + tokens * num_experts, T(0));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t k = 0; k < top_k; ++k) {
      const std::int64_t e = indices[t * top_k + k];
      if (e < 0) continue;
      check(e < num_experts, "expert index ", e, " is not below ", num_experts);
      routing_map[t * num_experts + e] = 1;
      multihot_probs[t * num_experts + e] = probs[t * top_k + k];
    }
}

template <class T>
void indices_to_multihot_backward(const std::int64_t* indices, const T* d_multihot_probs, std::int64_t tokens,
                                  std::int64_t top_k, std::int64_t num_experts, T* d_probs_k) {
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t k = 0; k < top_k; ++k) {
      const std::int64_t e = indices[t * top_k + k];
      d_probs_k[t * top_k + k] = e < 0 ? T(0) : d_multihot_probs[t * num_experts + e];
    }
}

#define G4_INSTANTIATE(T)                                                                                  \
  template std::int64_t megatron_permute<T>(const T*, std::int64_t, std::int64_t, const std::uint8_t*,     \
                                            std::int64_t, const T*, const MegatronPermuteOptions&,         \
                                            std::vector<T>*, std::vector<T>*, std::vector<std::int64_t>*); \
  template void megatron_unpermute<T>(const T*, const std::int64_t*, std::int64_t, std::int64_t,           \
                                      std::int64_t, const T*, const std::uint8_t*, std::int64_t,           \
                                      const MegatronPermuteOptions&, T*);                                  \
  template void megatron_unpermute_backward<T>(const T*, const T*, const std::int64_t*, std::int64_t,      \
                                               std::int64_t, std::int64_t, const T*, const std::uint8_t*,  \
                                               std::int64_t, const MegatronPermuteOptions&, T*, T*);       \
  template void indices_to_multihot<T>(const std::int64_t*, const T*, std::int64_t, std::int64_t,          \
                                       std::int64_t, std::uint8_t*, T*);                                   \
  template void indices_to_multihot_backward<T>(const std::int64_t*, const T*, std::int64_t, std::int64_t, \
                                                std::int64_t, T*);
G4_INSTANTIATE(float)
G4_INSTANTIATE(double)
#undef G4_INSTANTIATE

}  // namespace g4
