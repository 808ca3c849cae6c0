// forward_context.h: what every layer of one forward pass shares: the batch, RoPE tables and attention
// masks per attention kind (built once per pass), and the K/V that KV-shared layers read.
#pragma once

#include <map>
#include <vector>

#include "core/batch.h"
#include "core/tensor.h"
#include "io/config.h"
#include "ops/cpu/rope.h"

namespace g4 {

struct MoeParallel;  // moe/token_dispatcher.h

struct ForwardContext {
  const TextConfig* config = nullptr;
  const Batch* batch = nullptr;
  std::map<AttentionKind, RopeTable> rope;                                // [T, head_dim] per kind
  std::map<AttentionKind, std::vector<std::vector<std::uint8_t>>> masks;  // per kind, per row: [S, S]
  std::map<AttentionKind, std::pair<Tensor, Tensor>> shared_kv;       // K, V [T, Nkv, D] of the storing layer
  std::map<AttentionKind, std::pair<Tensor, Tensor>> shared_kv_grad;  // backward: dK, dV accumulated for it
  const MoeParallel* moe_parallel = nullptr;  // expert parallelism of the MoE blocks; nullptr: none
};

ForwardContext make_forward_context(const TextConfig& config, const Batch& batch);

}  // namespace g4
