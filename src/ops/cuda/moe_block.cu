#include "ops/cuda/moe_block.h"

#include <cuda_bf16.h>

#include <memory>
#include <mutex>

#include "core/cuda/cuda_check.h"
#include "core/error.h"
#include "ops/cuda/cuda_context.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/moe_experts.h"
#include "ops/cuda/moe_gate.h"
#include "ops/moe_block_kernel.h"

namespace g4::cuda {

namespace {

using bf16 = __nv_bfloat16;
using i64 = std::int64_t;

int current_device() {
  int device = 0;
  G4_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

CudaContext& legacy_stream_context() {
  static CudaContext ctx(current_device(), CudaContext::Stream::legacy_default);
  return ctx;
}

int round_up_8(int v) {
  return (v + 7) / 8 * 8;
}

// dst[r, dst_col + c] += src[r, src_col + c] for c < cols (row pitches in elements).
__global__ void add_columns_kernel(const float* src, i64 rows, i64 src_pitch, i64 src_col, float* dst,
                                   i64 dst_pitch, i64 dst_col, i64 cols) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < rows * cols;
       i += i64{gridDim.x} * blockDim.x) {
    const i64 r = i / cols, c = i % cols;
    dst[r * dst_pitch + dst_col + c] += src[r * src_pitch + src_col + c];
  }
}

void add_columns(const float* src, i64 rows, i64 src_pitch, i64 src_col, float* dst, i64 dst_pitch,
                 i64 dst_col, i64 cols, cudaStream_t stream) {
  if (rows * cols == 0) return;
  const int blocks = static_cast<int>(std::min<i64>((rows * cols + 255) / 256, 65535 * 8));
  add_columns_kernel<<<blocks, 256, 0, stream>>>(src, rows, src_pitch, src_col, dst, dst_pitch, dst_col,
                                                 cols);
  G4_CUDA_CHECK_LAUNCH();
}

__global__ void to_bf16_kernel(const float* x, bf16* y, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}

// Copies rows of `width` bytes between pitches (bytes), on the stream.
void copy_rows(void* dst, i64 dst_pitch, const void* src, i64 src_pitch, i64 width, i64 rows,
               cudaStream_t stream) {
  if (rows * width == 0) return;
  G4_CUDA_CHECK(cudaMemcpy2DAsync(dst, static_cast<std::size_t>(dst_pitch), src,
                                  static_cast<std::size_t>(src_pitch), static_cast<std::size_t>(width),
                                  static_cast<std::size_t>(rows), cudaMemcpyDeviceToDevice, stream));
}

class MoeBlockCuda final : public DeviceMoeBlock {
 public:
  explicit MoeBlockCuda(const MoeBlockShape& s)
      : shape_(s),
        ctx_(legacy_stream_context()),
        inter_(round_up_8(s.inter)),
        experts_(ctx_, ExpertShape{s.tokens, s.hidden, inter_, s.experts, s.top_k}) {
    check(s.hidden % 8 == 0, "MoE block on CUDA: hidden_size ", s.hidden, " is not a multiple of 8");
    const auto T = static_cast<std::size_t>(std::max<i64>(s.tokens, 1));
    const std::size_t H = s.hidden, E = s.experts, K = s.top_k, I = s.inter, Ip = inter_;
    rms_ = DeviceBuffer(T * 4);
    ns_ = DeviceBuffer(T * H * 4);
    logits_ = DeviceBuffer(T * E * 4);
    indices_ = DeviceBuffer(T * K * 4);
    weights_ = DeviceBuffer(T * K * 4);
    d_weights_ = DeviceBuffer(T * K * 4);
    dx_gate_ = DeviceBuffer(T * H * 4);
    scratch_ =
        DeviceBuffer(static_cast<std::size_t>(moe_gate_backward_scratch_floats(gate_shape(s.tokens))) * 4);
    if (Ip != I) {  // zero-padded copies of the weights and their gradients
      gate_up_pad_ = DeviceBuffer(E * H * 2 * Ip * 2);
      down_pad_ = DeviceBuffer(E * Ip * H * 2);
      d_gate_up_pad_ = DeviceBuffer(E * H * 2 * Ip * 4);
      d_down_pad_ = DeviceBuffer(E * Ip * H * 4);
      G4_CUDA_CHECK(cudaMemsetAsync(gate_up_pad_.data(), 0, gate_up_pad_.bytes(), ctx_.stream()));
      G4_CUDA_CHECK(cudaMemsetAsync(down_pad_.data(), 0, down_pad_.bytes(), ctx_.stream()));
    }
  }

  const MoeBlockShape& shape() const override { return shape_; }

  void forward(i64 tokens, const Bf16Bits* gate_input, const Bf16Bits* expert_input, const float* router_proj,
               const float* router_scale, const Bf16Bits* gate_and_up, const Bf16Bits* down,
               Bf16Bits* y) override {
    check(tokens >= 0 && tokens <= shape_.tokens, "MoE block on CUDA: ", tokens, " tokens, planned for ",
          shape_.tokens);
    tokens_ = tokens;
    if (tokens == 0) return;
    moe_gate_forward(ctx_, gate_shape(tokens), reinterpret_cast<const bf16*>(gate_input), router_proj,
                     router_scale, saved());
    experts_.forward(tokens, reinterpret_cast<const bf16*>(expert_input), weights_.as<float>(),
                     indices_.as<int>(), nullptr, expert_weights(gate_and_up, down, /*refresh=*/true),
                     reinterpret_cast<bf16*>(y));
  }

  void backward(const Bf16Bits* gate_input, const Bf16Bits* dy, const float* router_proj,
                const float* router_scale, const Bf16Bits* gate_and_up, const Bf16Bits* down,
                Bf16Bits* d_gate_input, Bf16Bits* d_expert_input, float* d_router_proj, float* d_router_scale,
                float* d_gate_and_up, float* d_down) override {
    if (tokens_ == 0) return;
    cudaStream_t st = ctx_.stream();
    const bool padded = inter_ != shape_.inter;
    if (padded) {
      G4_CUDA_CHECK(cudaMemsetAsync(d_gate_up_pad_.data(), 0, d_gate_up_pad_.bytes(), st));
      G4_CUDA_CHECK(cudaMemsetAsync(d_down_pad_.data(), 0, d_down_pad_.bytes(), st));
    }
    const ExpertGrads grads{padded ? d_gate_up_pad_.data() : d_gate_and_up,
                            padded ? d_down_pad_.data() : d_down,
                            /*fp32_accumulate=*/true};
    experts_.backward(reinterpret_cast<const bf16*>(dy), expert_weights(gate_and_up, down, /*refresh=*/false),
                      grads, reinterpret_cast<bf16*>(d_expert_input), d_weights_.as<float>());
    if (padded) {
      const i64 H = shape_.hidden, E = shape_.experts, I = shape_.inter, Ip = inter_;
      add_columns(d_gate_up_pad_.as<float>(), E * H, 2 * Ip, 0, d_gate_and_up, 2 * I, 0, I, st);
      add_columns(d_gate_up_pad_.as<float>(), E * H, 2 * Ip, Ip, d_gate_and_up, 2 * I, I, I, st);
      add_columns(d_down_pad_.as<float>(), E, Ip * H, 0, d_down, I * H, 0, I * H, st);
    }
    moe_gate_backward(ctx_, gate_shape(tokens_), reinterpret_cast<const bf16*>(gate_input), router_proj,
                      router_scale, saved(), d_weights_.as<float>(), scratch_.as<float>(),
                      dx_gate_.as<float>(), d_router_proj, d_router_scale);
    const i64 n = tokens_ * shape_.hidden;
    to_bf16_kernel<<<static_cast<int>(std::min<i64>((n + 255) / 256, 65535 * 8)), 256, 0, st>>>(
        dx_gate_.as<float>(), reinterpret_cast<bf16*>(d_gate_input), n);
    G4_CUDA_CHECK_LAUNCH();
  }

 private:
  GateShape gate_shape(i64 tokens) const {
    return {tokens, shape_.hidden, shape_.experts, shape_.top_k, shape_.eps};
  }
  GateSaved saved() const {
    return {rms_.as<float>(), ns_.as<float>(), logits_.as<float>(), indices_.as<int>(), weights_.as<float>()};
  }
  // The experts' weights as the kernels take them: the caller's, or (padded sizes) the padded copies,
  // refreshed from the caller's at a forward.
  ExpertWeights expert_weights(const Bf16Bits* gate_and_up, const Bf16Bits* down, bool refresh) {
    if (inter_ == shape_.inter)
      return {reinterpret_cast<const bf16*>(gate_and_up), reinterpret_cast<const bf16*>(down)};
    if (refresh) {
      const i64 H = shape_.hidden, E = shape_.experts, I = shape_.inter, Ip = inter_;
      cudaStream_t st = ctx_.stream();
      auto* gu = gate_up_pad_.as<bf16>();
      copy_rows(gu, 2 * Ip * 2, gate_and_up, 2 * I * 2, I * 2, E * H, st);           // gate columns
      copy_rows(gu + Ip, 2 * Ip * 2, gate_and_up + I, 2 * I * 2, I * 2, E * H, st);  // up columns
      copy_rows(down_pad_.data(), Ip * H * 2, down, I * H * 2, I * H * 2, E, st);    // down rows
    }
    return {gate_up_pad_.as<bf16>(), down_pad_.as<bf16>()};
  }

  MoeBlockShape shape_;
  CudaContext& ctx_;
  int inter_;  // the experts' intermediate size as the kernels see it (a multiple of 8)
  MoeExpertsCuda experts_;
  i64 tokens_ = 0;
  DeviceBuffer rms_, ns_, logits_, indices_, weights_, d_weights_, dx_gate_, scratch_;
  DeviceBuffer gate_up_pad_, down_pad_, d_gate_up_pad_, d_down_pad_;
};

}  // namespace

void install_cuda_moe_block() {
  static std::once_flag once;
  std::call_once(once, [] {
    cuda_moe_block_factory() = [](const MoeBlockShape& shape) -> std::unique_ptr<DeviceMoeBlock> {
      return std::make_unique<MoeBlockCuda>(shape);
    };
  });
}

}  // namespace g4::cuda
