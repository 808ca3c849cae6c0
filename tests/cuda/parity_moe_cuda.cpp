// parity_moe_cuda.cpp: CudaMoeBackend (parity_moe_cuda.h): each call uploads its inputs, runs the kernels on
// the backend's stream, synchronises and reads every output back. Outputs start poisoned (NaN, -1), so an
// element a kernel leaves unwritten fails the comparison.
#include "parity_moe_cuda.h"

#include "cuda_test_util.h"
#include "ops/cuda/moe_experts.h"
#include "ops/cuda/moe_gate.h"
#include "ops/cuda/moe_permute.h"

namespace g4::cuda::test {
namespace {

std::size_t size(std::int64_t n) {
  return static_cast<std::size_t>(n);
}

std::vector<int> to_int32(const std::vector<std::int64_t>& v) {
  return std::vector<int>(v.begin(), v.end());
}
std::vector<std::int64_t> to_int64(const std::vector<int>& v) {
  return std::vector<std::int64_t>(v.begin(), v.end());
}

}  // namespace

parity::GateResult CudaMoeBackend::gate(const parity::GateInputs& in, bool with_backward) {
  const std::int64_t T = in.tokens, H = in.hidden, E = in.experts, K = in.top_k;
  const GateShape s{T, static_cast<int>(H), static_cast<int>(E), static_cast<int>(K), in.eps};
  DeviceBuffer x = to_device_bf16(in.x), proj = to_device(in.proj), scale = to_device(in.scale);
  DeviceBuffer rms(size(T) * 4), ns(size(T * H) * 4), logits(size(T * E) * 4), idx(size(T * K) * 4),
      w(size(T * K) * 4);
  poison(idx);
  poison(w);
  const GateSaved saved{rms.as<float>(), ns.as<float>(), logits.as<float>(), idx.as<int>(), w.as<float>()};
  moe_gate_forward(ctx_, s, x.as<__nv_bfloat16>(), proj.as<float>(), scale.as<float>(), saved);
  ctx_.synchronize();
  parity::GateResult r;
  r.weights = from_device<float>(w, size(T * K));
  r.indices = to_int64(from_device<int>(idx, size(T * K)));
  if (!with_backward) return r;
  DeviceBuffer d_weights = to_device(in.d_weights), scratch(size(moe_gate_backward_scratch_floats(s)) * 4),
               dx(size(T * H) * 4);
  DeviceBuffer d_proj = to_device(std::vector<float>(size(E * H), 0.0f)),
               d_scale = to_device(std::vector<float>(size(H), 0.0f));
  poison(dx);
  moe_gate_backward(ctx_, s, x.as<__nv_bfloat16>(), proj.as<float>(), scale.as<float>(), saved,
                    d_weights.as<float>(), scratch.as<float>(), dx.as<float>(), d_proj.as<float>(),
                    d_scale.as<float>());
  ctx_.synchronize();
  r.dx = from_device<float>(dx, size(T * H));
  r.d_proj = from_device<float>(d_proj, size(E * H));
  r.d_scale = from_device<float>(d_scale, size(H));
  return r;
}

parity::PermutationResult CudaMoeBackend::permute(const parity::PermutationInputs& in) {
  const std::int64_t T = in.tokens, K = in.top_k, E = in.experts;
  DeviceBuffer indices = to_device(to_int32(in.indices)), weights = to_device(in.weights),
               mask = to_device(in.mask);
  DeviceBuffer scratch(size(moe_permute_scratch_ints(T, static_cast<int>(K), static_cast<int>(E))) * 4),
      offsets(size(E + 1) * 4), tile_offsets(size(E + 1) * 4), row_token(size(T * K) * 4),
      row_weight(size(T * K) * 4), slot_row(size(T * K) * 4);
  for (DeviceBuffer* b : {&offsets, &row_token, &row_weight, &slot_row}) poison(*b);
  const MoePermutation out{offsets.as<int>(), tile_offsets.as<int>(), row_token.as<int>(),
                           row_weight.as<float>(), slot_row.as<int>()};
  moe_permute(indices.as<int>(), weights.as<float>(), mask.as<std::uint8_t>(), T, static_cast<int>(K),
              static_cast<int>(E), scratch.as<int>(), out, ctx_.stream());
  ctx_.synchronize();
  parity::PermutationResult r;
  r.offsets = to_int64(from_device<int>(offsets, size(E + 1)));
  const std::int64_t rows = r.offsets.back();
  if (rows < 0 || rows > T * K) return r;  // garbage offsets: the comparison of offsets fails
  r.row_token = to_int64(from_device<int>(row_token, size(rows)));
  r.row_weight = from_device<float>(row_weight, size(rows));
  r.slot_row = to_int64(from_device<int>(slot_row, size(T * K)));
  return r;
}

parity::ExpertsResult CudaMoeBackend::experts(const parity::ExpertsInputs& in, bool with_backward) {
  const std::int64_t T = in.tokens, H = in.hidden, K = in.top_k;
  MoeExpertsCuda experts(ctx_, {T, static_cast<int>(H), static_cast<int>(in.inter),
                                static_cast<int>(in.experts), static_cast<int>(K)});
  DeviceBuffer x = to_device_bf16(in.x), gate_up = to_device_bf16(in.gate_up), down = to_device_bf16(in.down),
               dy = to_device_bf16(in.dy);
  DeviceBuffer indices = to_device(to_int32(in.indices)), weights = to_device(in.weights),
               mask = to_device(in.mask);
  DeviceBuffer y(size(T * H) * 2), dx(size(T * H) * 2), d_weights(size(T * K) * 4);
  DeviceBuffer d_gate_up = to_device(std::vector<float>(in.gate_up.size(), 0.0f)),
               d_down = to_device(std::vector<float>(in.down.size(), 0.0f));
  for (DeviceBuffer* b : {&y, &dx, &d_weights}) poison(*b);
  const ExpertWeights w{gate_up.as<__nv_bfloat16>(), down.as<__nv_bfloat16>()};
  experts.forward(T, x.as<__nv_bfloat16>(), weights.as<float>(), indices.as<int>(), mask.as<std::uint8_t>(),
                  w, y.as<__nv_bfloat16>());
  if (with_backward)
    experts.backward(dy.as<__nv_bfloat16>(), w, {d_gate_up.data(), d_down.data(), true},
                     dx.as<__nv_bfloat16>(), d_weights.as<float>());
  ctx_.synchronize();
  parity::ExpertsResult r;
  r.y = from_device_bf16(y, size(T * H));
  if (!with_backward) return r;
  r.dx = from_device_bf16(dx, size(T * H));
  r.d_weights = from_device<float>(d_weights, size(T * K));
  r.d_gate_up = from_device<float>(d_gate_up, in.gate_up.size());
  r.d_down = from_device<float>(d_down, in.down.size());
  return r;
}

}  // namespace g4::cuda::test
