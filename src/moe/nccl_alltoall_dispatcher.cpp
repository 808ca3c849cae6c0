// nccl_alltoall_dispatcher.cpp: the launch and exchange sequence of the GPU expert-parallel experts (see
// nccl_alltoall_dispatcher.h; the kernels are nccl_alltoall_kernels.cu).
#include "moe/nccl_alltoall_dispatcher.h"

#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/error.h"
#include "moe/nccl_alltoall_kernels.h"

namespace g4 {
namespace {

using bf16 = __nv_bfloat16;

// Grows b to hold at least `bytes` (never empty, so pointers are valid even for zero rows).
void ensure(cuda::DeviceBuffer& b, std::size_t bytes) {
  bytes = std::max<std::size_t>(bytes, 256);
  if (b.bytes() < bytes) b = cuda::DeviceBuffer(bytes);
}

std::vector<std::size_t> bytes_of(const std::vector<std::int64_t>& rows, std::size_t row_bytes) {
  std::vector<std::size_t> b(rows.size());
  for (std::size_t p = 0; p < rows.size(); ++p) b[p] = static_cast<std::size_t>(rows[p]) * row_bytes;
  return b;
}

}  // namespace

NcclMoeAlltoall::NcclMoeAlltoall(cuda::CudaContext& ctx, Communicator& ep, const cuda::ExpertShape& shape)
    : ctx_(ctx), ep_(ep), shape_(shape), ranks_(ep.size()) {
  range_ = expert_range(shape.experts, ranks_, ep.rank());  // checks E >= P
  check(shape.tokens >= 0 && shape.top_k >= 1, "NcclMoeAlltoall: ", shape.tokens, " tokens, top-k ",
        shape.top_k);
  check(shape.hidden % 8 == 0 && shape.inter % 8 == 0, "NcclMoeAlltoall: hidden ", shape.hidden,
        " and inter ", shape.inter, " must be multiples of 8");
  std::vector<int> first(static_cast<std::size_t>(ranks_) + 1);
  for (int p = 0; p < ranks_; ++p) first[p] = static_cast<int>(expert_range(shape.experts, ranks_, p).start);
  first[ranks_] = static_cast<int>(shape.experts);
  const std::size_t P = static_cast<std::size_t>(ranks_), T = static_cast<std::size_t>(shape.tokens);
  first_ = cuda::DeviceBuffer(first.size() * sizeof(int));
  G4_CUDA_CHECK(cudaMemcpyAsync(first_.data(), first.data(), first.size() * sizeof(int),
                                cudaMemcpyHostToDevice, ctx.stream()));
  ctx.synchronize();  // `first` is a local
  ensure(local_pos_, P * T * sizeof(int));
  ensure(counts_, 2 * P * sizeof(std::int64_t));
  ensure(offsets_, P * sizeof(std::int64_t));
  ensure(indices_, T * shape.top_k * sizeof(int));
  send_counts_.assign(P, 0);
  recv_counts_.assign(P, 0);
}

void NcclMoeAlltoall::set_gather_mode(cuda::GatherMode mode) {
  gather_mode_ = mode;
  if (experts_) experts_->set_gather_mode(mode);
}

void NcclMoeAlltoall::reserve(std::int64_t send_rows, std::int64_t recv_rows) {
  const std::size_t S = static_cast<std::size_t>(send_rows), R = static_cast<std::size_t>(recv_rows);
  const std::size_t H = static_cast<std::size_t>(shape_.hidden), K = static_cast<std::size_t>(shape_.top_k);
  ensure(send_rows_, S * H * sizeof(bf16));
  ensure(send_weights_, S * K * sizeof(float));
  ensure(send_indices_, S * K * sizeof(int));
  for (cuda::DeviceBuffer* b : {&recv_x_, &recv_rows_, &recv_dx_}) ensure(*b, R * H * sizeof(bf16));
  for (cuda::DeviceBuffer* b : {&recv_weights_, &recv_dweights_}) ensure(*b, R * K * sizeof(float));
  ensure(recv_indices_, R * K * sizeof(int));
  if (!experts_ || recv_rows > experts_rows_) {
    experts_rows_ = std::max<std::int64_t>(recv_rows, 1);
    experts_.reset();  // free its arena before planning the larger one
    experts_ = std::make_unique<cuda::MoeExpertsCuda>(
        ctx_, cuda::ExpertShape{experts_rows_, shape_.hidden, shape_.inter, static_cast<int>(range_.count),
                                shape_.top_k});
    experts_->set_gather_mode(gather_mode_);
  }
}

void NcclMoeAlltoall::exchange(const void* send, std::size_t send_row_bytes, void* recv,
                               std::size_t recv_row_bytes, bool forward_direction) {
  ctx_.synchronize();  // the communicator's contract: inputs complete before the call
  if (forward_direction)
    ep_.all_to_all_v(send, bytes_of(send_counts_, send_row_bytes), recv,
                     bytes_of(recv_counts_, recv_row_bytes));
  else
    ep_.all_to_all_v(send, bytes_of(recv_counts_, send_row_bytes), recv,
                     bytes_of(send_counts_, recv_row_bytes));
}

void NcclMoeAlltoall::forward(std::int64_t tokens, const bf16* x, const float* weights, const int* indices,
                              const std::uint8_t* mask, const cuda::ExpertWeights& local, bf16* y) {
  check(tokens >= 0 && tokens <= shape_.tokens, "NcclMoeAlltoall::forward: ", tokens, " tokens, planned for ",
        shape_.tokens);
  tokens_ = tokens;
  const int H = shape_.hidden, K = shape_.top_k;
  const std::size_t P = static_cast<std::size_t>(ranks_);
  cudaStream_t st = ctx_.stream();
  auto* counts = counts_.as<std::int64_t>();
  auto* offsets = offsets_.as<std::int64_t>();
  const int* first = first_.as<int>();
  const int* local_pos = local_pos_.as<int>();

  // 1. Which tokens go where; rows per destination; exchange the counts (8 bytes per rank pair).
  cuda::ep_route(indices, mask, tokens, K, ranks_, first, local_pos_.as<int>(), counts, offsets, st);
  if (tokens > 0)
    G4_CUDA_CHECK(cudaMemcpyAsync(indices_.data(), indices,
                                  static_cast<std::size_t>(tokens) * K * sizeof(int),
                                  cudaMemcpyDeviceToDevice, st));
  ctx_.synchronize();
  const std::vector<std::size_t> eight(P, sizeof(std::int64_t));
  ep_.all_to_all_v(counts, eight, counts + P, eight);
  // The one device-to-host read: sizes of the exchange (the communicator has completed its copy).
  std::vector<std::int64_t> host(2 * P);
  G4_CUDA_CHECK(
      cudaMemcpyAsync(host.data(), counts, 2 * P * sizeof(std::int64_t), cudaMemcpyDeviceToHost, st));
  G4_CUDA_CHECK(cudaStreamSynchronize(st));
  send_counts_.assign(host.begin(), host.begin() + P);
  recv_counts_.assign(host.begin() + P, host.end());
  send_total_ = recv_total_ = 0;
  for (std::size_t p = 0; p < P; ++p) {
    send_total_ += send_counts_[p];
    recv_total_ += recv_counts_[p];
  }
  reserve(send_total_, recv_total_);

  // 2. Pack x rows, weights and local indices per destination; exchange them.
  cuda::ep_pack(x, weights, indices, tokens, H, K, ranks_, first, local_pos, offsets, send_rows_.as<bf16>(),
                send_weights_.as<float>(), send_indices_.as<int>(), st);
  exchange(send_rows_.data(), H * sizeof(bf16), recv_x_.data(), H * sizeof(bf16), true);
  exchange(send_weights_.data(), K * sizeof(float), recv_weights_.data(), K * sizeof(float), true);
  exchange(send_indices_.data(), K * sizeof(int), recv_indices_.data(), K * sizeof(int), true);

  // 3. Local experts on the received rows (all live: no mask); each row's local sum goes back to its source.
  experts_->forward(recv_total_, recv_x_.as<bf16>(), recv_weights_.as<float>(), recv_indices_.as<int>(),
                    nullptr, local, recv_rows_.as<bf16>());
  exchange(recv_rows_.data(), H * sizeof(bf16), send_rows_.data(), H * sizeof(bf16), false);

  // 4. y[t] = the sum over destinations, ascending.
  cuda::ep_combine_rows(send_rows_.as<bf16>(), tokens, H, ranks_, local_pos, offsets, y, st);
}

void NcclMoeAlltoall::backward(const bf16* dy, const cuda::ExpertWeights& local,
                               const cuda::ExpertGrads& local_grads, bf16* dx, float* d_weights) {
  check(experts_ != nullptr, "NcclMoeAlltoall::backward before forward");
  const int H = shape_.hidden, K = shape_.top_k;
  cudaStream_t st = ctx_.stream();
  const int* first = first_.as<int>();
  const int* local_pos = local_pos_.as<int>();
  const auto* offsets = offsets_.as<std::int64_t>();

  // dy rows to the same destinations as the forward's x rows (the sizes are the forward's).
  cuda::ep_pack(dy, nullptr, nullptr, tokens_, H, K, ranks_, first, local_pos, offsets, send_rows_.as<bf16>(),
                nullptr, nullptr, st);
  exchange(send_rows_.data(), H * sizeof(bf16), recv_rows_.data(), H * sizeof(bf16), true);
  experts_->backward(recv_rows_.as<bf16>(), local, local_grads, recv_dx_.as<bf16>(),
                     recv_dweights_.as<float>());
  exchange(recv_dx_.data(), H * sizeof(bf16), send_rows_.data(), H * sizeof(bf16), false);
  exchange(recv_dweights_.data(), K * sizeof(float), send_weights_.data(), K * sizeof(float), false);
  cuda::ep_combine_rows(send_rows_.as<bf16>(), tokens_, H, ranks_, local_pos, offsets, dx, st);
  cuda::ep_collect_slots(send_weights_.as<float>(), indices_.as<int>(), tokens_, K, ranks_, first, local_pos,
                         offsets, d_weights, st);
}

}  // namespace g4
