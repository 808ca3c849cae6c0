// nccl_alltoall_dispatcher.h: the experts part of the MoE block spread over an expert-parallel (EP) group of
// GPUs, with the alltoall dispatcher's semantics (DeepEP-style, as moe/token_dispatcher.h on the CPU): each
// rank holds a contiguous block of the experts (expert_range) and its own tokens; each live token is sent
// once to every EP rank owning one of its chosen experts, with its K fp32 routing weights and its K indices
// remapped to that rank's local ids (-1 for the others); the receiver runs MoeExpertsCuda over its local
// experts on the rows it received and sends each row's local sum back; the source sums a token's rows over
// the destination ranks in ascending order, in fp32. Backward mirrors it: dy rows go out, dx rows and the
// routing-weight gradients (computed by the owning rank only) come back.
//
// Invariants:
// - Every rank of `ep` calls forward and backward the same number of times, in the same order; `ep` takes
//   DEVICE buffers (an NcclCommunicator, or one split from it) on ctx's device.
// - Same meaning as MoeExpertsCuda over all E experts on this rank's tokens: masked tokens and choices
//   outside [0, E) contribute nothing (such a token is sent nowhere; y = 0, dx = 0, d_weights = 0). forward
//   overwrites y; backward overwrites dx and d_weights, and overwrites (bf16) or adds into (fp32) the LOCAL
//   experts' weight gradients, which sum over every rank's tokens routed to them.
// - Deterministic: rows travel in rank order, token order within a rank; each sum has a fixed order.
//   At one rank the results equal MoeExpertsCuda's bit for bit (the same rows in the same order reach every
//   expert; one destination's row is returned as is). With several ranks y and dx differ by rounding only:
//   each destination rounds its partial sum to bf16 before the source adds the partials.
// - Host synchronisation: the forward reads the exchanged per-rank row counts back to the host once (one
//   device-to-host copy: they size the exchange and, on growth, the buffers); the backward reuses them and
//   reads nothing. The communicator is synchronous at return and needs its inputs complete, so ctx's stream
//   is synchronised before each exchange (5 in forward: counts, x, weights, indices, y back; 3 in backward).
//   forward and backward return with the last combine still enqueued on ctx's stream, like MoeExpertsCuda.
// - Memory grows to the largest exchange seen (no upper bound is planned: a rank may receive every rank's
//   tokens). forward keeps its own copy of the indices and of the received rows; x, weights, indices and
//   mask may change once forward has returned.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <cuda_bf16.h>

#include "dist/communicator.h"
#include "moe/state_dict_adapter.h"
#include "ops/cuda/cuda_context.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/moe_experts.h"

namespace g4 {

class NcclMoeAlltoall {
 public:
  // shape.experts is the GLOBAL expert count E (>= ep.size()); shape.tokens the most local tokens a forward
  // will see.
  NcclMoeAlltoall(cuda::CudaContext& ctx, Communicator& ep, const cuda::ExpertShape& shape);

  // This rank's experts: global ids [start, start + count).
  ExpertRange local_experts() const { return range_; }

  // x [tokens, H] bf16, weights [tokens, K] fp32, indices [tokens, K] int32 GLOBAL expert ids, mask [tokens]
  // or null; local holds this rank's experts (gate_up [count, H, 2I], down [count, I, H]). y [tokens, H].
  void forward(std::int64_t tokens, const __nv_bfloat16* x, const float* weights, const int* indices,
               const std::uint8_t* mask, const cuda::ExpertWeights& local, __nv_bfloat16* y);
  // dy [tokens, H] -> dx [tokens, H], d_weights [tokens, K]; local_grads as MoeExpertsCuda::backward.
  void backward(const __nv_bfloat16* dy, const cuda::ExpertWeights& local,
                const cuda::ExpertGrads& local_grads, __nv_bfloat16* dx, float* d_weights);

  // Rows the last forward sent to / received from each rank.
  const std::vector<std::int64_t>& send_counts() const { return send_counts_; }
  const std::vector<std::int64_t>& recv_counts() const { return recv_counts_; }
  void set_gather_mode(cuda::GatherMode mode);  // of the local experts (see cuda::GatherMode)

 private:
  void exchange(const void* send, std::size_t send_row_bytes, void* recv, std::size_t recv_row_bytes,
                bool forward_direction);  // forward: send layout -> recv layout; else back
  void reserve(std::int64_t send_rows, std::int64_t recv_rows);

  cuda::CudaContext& ctx_;
  Communicator& ep_;
  cuda::ExpertShape shape_;  // experts = global E
  ExpertRange range_;
  int ranks_ = 1;
  cuda::GatherMode gather_mode_ = cuda::GatherMode::automatic;  // MoeExpertsCuda's default
  std::int64_t tokens_ = 0;                                     // of the last forward
  std::vector<std::int64_t> send_counts_, recv_counts_;
  std::int64_t send_total_ = 0, recv_total_ = 0;

  // Fixed size (planned from shape.tokens and the rank count).
  cuda::DeviceBuffer first_;      // int [P + 1]: rank p owns experts [first[p], first[p + 1])
  cuda::DeviceBuffer local_pos_;  // int [P, tokens] (nccl_alltoall_kernels.h)
  cuda::DeviceBuffer counts_;     // int64 [2P]: rows sent to each rank, then rows received from each rank
  cuda::DeviceBuffer offsets_;    // int64 [P]: first send row of each rank
  cuda::DeviceBuffer indices_;    // int [tokens, K]: the forward's global indices, for backward
  // Grown on demand. Send layout (S rows): x out, then y back; dy out, then dx back.
  cuda::DeviceBuffer send_rows_, send_weights_, send_indices_;  // bf16 [S, H], fp32 [S, K] (also d_weights
                                                                // back), int [S, K]
  // Receive layout (R rows): recv_x_ is kept for backward; recv_rows_ holds y, then dy.
  cuda::DeviceBuffer recv_x_, recv_rows_, recv_dx_, recv_weights_, recv_indices_, recv_dweights_;
  std::unique_ptr<cuda::MoeExpertsCuda> experts_;  // local experts, planned for experts_rows_ rows
  std::int64_t experts_rows_ = 0;
};

}  // namespace g4
