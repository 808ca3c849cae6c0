// token_dispatcher.h: the routed experts of one MoE block spread over an expert-parallel (EP) group: each
// rank holds a contiguous block of experts (expert_range) and its own tokens; a dispatcher moves tokens to
// the experts and outputs back (the note's §7). Two dispatchers, chosen by option:
//
// - allgather (NeMo's "torch" dispatcher, §7.3/§4.3): variable-length all-gather of the tokens x, the routing
//   weights, the indices and the mask over the EP group; every rank runs its local experts over all gathered
//   tokens; all-reduce(SUM) of the output; each rank keeps its own rows. Backward: the output gradient is
//   placed in its rows and all-reduced (the backward of "all-reduce, then slice"), the local experts'
//   backward runs over all tokens, and the input and routing-weight gradients are all-reduced and sliced (the
//   backward of the gathers; NeMo deliberately uses all-reduce, not reduce-scatter).
// - alltoall (DeepEP's semantics, §7.2): each valid token is sent once per destination rank (a rank holding
// at
//   least one of its top-k experts), with its K global indices and K routing weights; the receiver runs its
//   local experts (slots of other ranks' experts are skipped), sums each token's local expert outputs, and
//   sends the row back; the source sums the rows from all destinations. Backward mirrors it: dy is sent to
//   every destination of the token, the local experts' backward runs there, and the input rows and the
//   routing-weight gradients (non-zero only at the owning rank) are sent back and summed at the source.
//
// Rows are exchanged in rank order and, within a rank, in token order; sums at the source run over
// destination ranks in ascending order, so results are run-to-run identical. Uneven token counts, ranks that
// send or receive nothing and batches with every token masked are valid. Invariants as ops/cpu/moe_experts.h:
// forward overwrites y, backward overwrites dx and dweights and accumulates (+=) into the local experts'
// gradients. Every rank of the EP group must call forward and backward the same number of times.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "dist/communicator.h"
#include "moe/state_dict_adapter.h"
#include "ops/cpu/moe_experts.h"

namespace g4 {

enum class DispatcherKind { allgather, alltoall };
DispatcherKind dispatcher_from_name(std::string_view name);  // "allgather" / "alltoall", else g4::Error
const char* dispatcher_name(DispatcherKind kind);

// Expert parallelism of the MoE blocks: the EP group (not owned), the exchange, and this rank's experts
// (expert_range(num_experts, ep->size(), ep->rank()), computed once by make_moe_parallel).
//
// replicated_tokens: every rank of the EP group holds the same tokens (the rest of the model runs replicated
// over the EP group, as `score --ep E` does with one data-parallel replica). Each rank then dispatches only
// its contiguous block of the tokens (ranks < T mod P take one more), and the block outputs and input
// gradients are all-gathered, so every token reaches its experts exactly once and every rank ends with the
// full output. The local experts see the same rows in the same order as one process would.
struct MoeParallel {
  Communicator* ep = nullptr;
  DispatcherKind dispatcher = DispatcherKind::alltoall;
  bool replicated_tokens = false;
  std::int64_t num_experts = 0;  // E of every MoE block
  ExpertRange experts;           // this rank's block of them
};

MoeParallel make_moe_parallel(Communicator& ep, DispatcherKind dispatcher, bool replicated_tokens,
                              std::int64_t num_experts);

// cfg with start / n_local set to this rank's experts (parallel.experts).
ExpertsConfig local_experts_config(const ExpertsConfig& cfg, const MoeParallel& parallel);

template <class T>
struct DispatchContext {
  std::int64_t tokens = 0;  // local tokens
  // allgather: every rank's token count, this rank's first row in the gathered order
  std::vector<std::int64_t> lens;
  std::int64_t offset = 0;
  // alltoall: rows sent to / received from each rank, and the local token of each sent row (send order)
  std::vector<std::int64_t> send_counts, recv_counts;
  std::vector<std::int64_t> send_tokens;
  // the rows the local experts saw (gathered or received), kept for backward
  std::int64_t rows = 0;
  std::vector<T> x, weights;
  std::vector<std::int64_t> indices;
  std::vector<std::uint8_t> mask;
  ExpertsContext<T> experts;
  std::vector<T> y, dy, dx, dw, back;  // scratch
  std::int64_t block_first = 0;        // replicated_tokens: this rank's block of the tokens
  std::vector<std::int64_t> block_lens;
};

// x [T, H], weights / indices [T, K] (global expert ids), token_mask [T] or nullptr; y [T, H] overwritten.
// gate_and_up / down hold this rank's experts only (local_experts_config(cfg, parallel).n_local of them).
template <class T>
void dispatched_experts_forward(const MoeParallel& parallel, const ExpertsConfig& cfg, const T* x,
                                const std::uint8_t* token_mask, const T* weights, const std::int64_t* indices,
                                std::int64_t tokens, std::int64_t top_k, const T* gate_and_up, const T* down,
                                T* y, DispatchContext<T>* ctx);

// dy [T, H]; dx [T, H] and dweights [T, K] overwritten; dgate_and_up / ddown (local experts) accumulated.
template <class T>
void dispatched_experts_backward(const MoeParallel& parallel, const ExpertsConfig& cfg, const T* gate_and_up,
                                 const T* down, DispatchContext<T>& ctx, const T* dy, T* dx, T* dweights,
                                 T* dgate_and_up, T* ddown);

// The full F32 tensor [E, ...] assembled from every EP rank's slice of it (rank r holds expert_range(E, P,
// r)), on every rank of `ep`: how expert weights and gradients are gathered to the checkpoint layout.
Tensor all_gather_experts(Communicator& ep, const Tensor& local, std::int64_t num_experts);

}  // namespace g4
