#include "model/vision_tower.h"

#include <array>
#include <cmath>

#include "core/error.h"
#include "ops/ops.h"

namespace g4 {

namespace {

// A constant [rows, 1] column of ones on `like`'s device and dtype: linear(ones, v as [n, 1]) broadcasts the
// vector v to every row exactly (one product by 1 per element), which is how the tower adds its per-channel
// constants with the op interface.
Tensor ones_column(std::int64_t rows, const Tensor& like) {
  Tensor host = Tensor::from_floats({rows, 1}, std::vector<float>(static_cast<std::size_t>(rows), 1.0f));
  if (like.dtype() != DType::f32) host = host.to_dtype(like.dtype());
  return like.device() == Device::cpu ? host : host.to(activation_allocator(like.device()));
}

// x [rows, n] += v broadcast over the rows; v as a weight [n, 1].
void add_row_(Tensor& x, const Tensor& v_column) {
  ops::add_(x, ops::linear(ones_column(x.dim(0), x), v_column));
}

// The 2-D RoPE in place on x [N, heads, D]: channels [0, D/2) rotate with the patch's x, [D/2, D) with its y,
// each half as an ordinary RoPE over D/2 channels (rotate_half within the half).
void rope_2d_(Tensor& x, const RopeTable& by_x, const RopeTable& by_y) {
  const std::int64_t N = x.dim(0), heads = x.dim(1), D = x.dim(2);
  const Tensor halves = x.reshaped({N * heads, 2, D / 2});
  Tensor first = ops::middle_slice(halves, 0).reshaped({N * heads, 1, D / 2});
  Tensor second = ops::middle_slice(halves, 1).reshaped({N * heads, 1, D / 2});
  ops::rope_(first, by_x);
  ops::rope_(second, by_y);
  Tensor out = ops::zeros({N * heads, 2, D / 2}, x.device(), x.dtype());
  ops::middle_slice_add_(out, 0, first.reshaped({N * heads, D / 2}));
  ops::middle_slice_add_(out, 1, second.reshaped({N * heads, D / 2}));
  x = out.reshaped({N, heads, D});
}

// Cos/sin tables for rope_2d_: one row per (patch, head), the patch's coordinate repeated over the heads.
RopeTable axis_table(const VisionConfig& c, std::span<const std::int64_t> coordinate, int heads) {
  const std::vector<float> inv_freq = rope_inv_freq({c.rope_theta, c.head_dim / 2, c.head_dim / 4, 1.0});
  std::vector<std::int64_t> positions;
  for (const std::int64_t p : coordinate)
    for (int h = 0; h < heads; ++h) positions.push_back(p);
  return rope_table(inv_freq, positions.data(), static_cast<std::int64_t>(positions.size()));
}

Tensor encoder_layer(const VisionConfig& c, const VisionLayerWeights& w, const Tensor& h,
                     const std::array<RopeTable, 2>& q_rope, const std::array<RopeTable, 2>& k_rope) {
  const std::int64_t N = h.dim(0);
  const int D = c.head_dim, Nq = c.num_attention_heads, Nkv = c.num_key_value_heads;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const Tensor a = ops::rms_norm(h, w.input_norm, eps);
  Tensor q = ops::rms_norm(ops::linear(a, w.q_proj).reshaped({N, Nq, D}), w.q_norm, eps);
  Tensor k = ops::rms_norm(ops::linear(a, w.k_proj).reshaped({N, Nkv, D}), w.k_norm, eps);
  const Tensor v = ops::rms_norm(ops::linear(a, w.v_proj).reshaped({N, Nkv, D}), Tensor(), eps);
  rope_2d_(q, q_rope[0], q_rope[1]);
  rope_2d_(k, k_rope[0], k_rope[1]);
  AttentionVisibility all;  // every patch of the image sees every other
  all.queries = all.keys = N;
  all.causal = false;
  const Tensor o = ops::attention(q, k, v, std::span(&all, 1)).reshaped({N, Nq * D});
  Tensor out = ops::copy(h);
  ops::add_(out, ops::rms_norm(ops::linear(o, w.o_proj), w.post_attention_norm, eps));
  const Tensor m = ops::rms_norm(out, w.pre_feedforward_norm, eps);
  const Tensor mlp =
      ops::linear(ops::geglu(ops::linear(m, w.gate_proj), ops::linear(m, w.up_proj)), w.down_proj);
  ops::add_(out, ops::rms_norm(mlp, w.post_feedforward_norm, eps));
  return out;
}

}  // namespace

VisionOutput vision_forward(const VisionConfig& c, const VisionWeights& w, const Tensor& patches,
                            std::span<const std::int64_t> xs, std::span<const std::int64_t> ys) {
  const std::int64_t N = patches.dim(0), H = c.hidden_size, k = c.pooling_kernel_size;
  check(patches.rank() == 2 && patches.dim(1) == 3LL * c.patch_size * c.patch_size,
        "an image's patches must be [N, ", 3 * c.patch_size * c.patch_size, "], got ",
        shape_str(patches.shape()));
  check(static_cast<std::int64_t>(xs.size()) == N && static_cast<std::int64_t>(ys.size()) == N,
        "an image needs one (x, y) position per patch");
  std::int64_t columns = 0, rows = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    check(xs[i] >= 0 && ys[i] >= 0, "patch ", i, " has a negative position");
    columns = std::max(columns, xs[i] + 1);
    rows = std::max(rows, ys[i] + 1);
  }
  check(columns * rows == N && columns % k == 0 && rows % k == 0, "the image's ", columns, " x ", rows,
        " patch grid (", N, " patches) must be complete and a multiple of the pooling kernel ", k);

  // Patch embedding: input_proj(2·x − 1) + the x and y position embeddings.
  Tensor centred = ops::scaled(patches, 2.0f);
  add_row_(centred, Tensor::from_floats({patches.dim(1), 1},
                                        std::vector<float>(static_cast<std::size_t>(patches.dim(1)), -1.0f))
                        .to(activation_allocator(patches.device())));
  Tensor h = ops::linear(centred, w.input_proj);
  const std::int64_t P = c.position_embedding_size;
  const Tensor table = w.position_table.reshaped({2 * P, H});
  ops::add_(h, ops::embedding(table.rows(0, P), xs, 1.0f, "position_embedding_size"));
  ops::add_(h, ops::embedding(table.rows(P, P), ys, 1.0f, "position_embedding_size"));

  const std::array<RopeTable, 2> q_rope = {axis_table(c, xs, c.num_attention_heads),
                                           axis_table(c, ys, c.num_attention_heads)};
  const std::array<RopeTable, 2> k_rope = {axis_table(c, xs, c.num_key_value_heads),
                                           axis_table(c, ys, c.num_key_value_heads)};
  for (const VisionLayerWeights& layer : w.layers) h = encoder_layer(c, layer, h, q_rope, k_rope);

  // k×k average pooling by position: soft token floor(x/k) + (columns/k)·floor(y/k) sums its k² patches
  // (embedding_backward is that scatter-add of rows), each weighted 1/k²; then × sqrt(H).
  const std::int64_t L = N / (k * k);
  Tensor features = h;
  if (L != N) {
    std::vector<std::int64_t> soft_token(static_cast<std::size_t>(N));
    for (std::int64_t i = 0; i < N; ++i) soft_token[i] = xs[i] / k + (columns / k) * (ys[i] / k);
    features = ops::zeros({L, H}, h.device(), DType::f32);
    ops::embedding_backward(h, soft_token, 1.0f / static_cast<float>(k * k), features);
  }
  features = ops::scaled(features, static_cast<float>(std::sqrt(static_cast<double>(H))));
  if (c.standardize) {
    // (h − std_bias) · std_scale: the bias row added exactly, then the scale as a diagonal product (each
    // output one product plus exact zeros).
    add_row_(features, w.std_shift);
    features = ops::linear(features, w.std_scale);
  }
  const Tensor normed = ops::rms_norm(features, Tensor(), static_cast<float>(c.rms_norm_eps));
  return {features, ops::linear(normed, w.embed_projection)};
}

}  // namespace g4
