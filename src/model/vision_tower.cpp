#include "model/vision_tower.h"

#include <array>
#include <cmath>

#include "core/error.h"
#include "model/linear.h"
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

using AxisTables = std::array<RopeTable, 2>;  // by x, by y

// The 2-D RoPE on x [N, heads, D] (in place; `backward`: its transpose on a gradient): channels [0, D/2)
// rotate with the patch's x, [D/2, D) with its y, each half an ordinary RoPE over D/2 channels.
void rope_2d_(Tensor& x, const AxisTables& tables, bool backward = false) {
  const std::int64_t N = x.dim(0), heads = x.dim(1), D = x.dim(2);
  const Tensor halves = x.reshaped({N * heads, 2, D / 2});
  Tensor out = ops::zeros({N * heads, 2, D / 2}, x.device(), x.dtype());
  for (int axis = 0; axis < 2; ++axis) {
    Tensor half = ops::middle_slice(halves, axis).reshaped({N * heads, 1, D / 2});
    if (backward)
      ops::rope_backward_(half, tables[axis]);
    else
      ops::rope_(half, tables[axis]);
    ops::middle_slice_add_(out, axis, half.reshaped({N * heads, D / 2}));
  }
  x = out.reshaped({N, heads, D});
}

// Cos/sin tables for rope_2d_: one row per (patch, head), the patch's coordinate repeated over the heads.
AxisTables axis_tables(const VisionConfig& c, std::span<const std::int64_t> xs,
                       std::span<const std::int64_t> ys, int heads) {
  const std::vector<float> inv_freq = rope_inv_freq({c.rope_theta, c.head_dim / 2, c.head_dim / 4, 1.0});
  AxisTables out;
  for (int axis = 0; axis < 2; ++axis) {
    std::vector<std::int64_t> positions;
    for (const std::int64_t p : axis == 0 ? xs : ys)
      for (int h = 0; h < heads; ++h) positions.push_back(p);
    out[axis] = rope_table(inv_freq, positions.data(), static_cast<std::int64_t>(positions.size()));
  }
  return out;
}

AttentionVisibility every_patch(std::int64_t N) {
  AttentionVisibility all;  // every patch of the image sees every other
  all.queries = all.keys = N;
  all.causal = false;
  return all;
}

bool clips(float lo, float hi) {
  return std::isfinite(lo) || std::isfinite(hi);
}

// y = clamp(W · clamp(x)) with the clip's bounds; `tape` keeps what clipped_backward needs.
Tensor clipped_forward(const Tensor& w, const LinearClip& c, const Tensor& x, ClipTape& tape) {
  tape.in = x;
  if (clips(c.input_min, c.input_max)) {
    tape.in = ops::copy(x);
    ops::clamp_(tape.in, c.input_min, c.input_max);
  }
  Tensor y = Linear(w).forward(tape.in);
  if (clips(c.output_min, c.output_max)) {
    tape.out_raw = ops::copy(y);
    ops::clamp_(y, c.output_min, c.output_max);
  }
  return y;
}

// dx of clipped_forward for dy (the weight gradient accumulates into g); x is the projection's input.
Tensor clipped_backward(const Tensor& w, Tensor& g, const LinearClip& c, const Tensor& x,
                        const ClipTape& tape, const Tensor& dy) {
  Tensor d = dy;
  if (!tape.out_raw.empty()) {
    d = ops::copy(dy);
    ops::clamp_backward_(d, tape.out_raw, c.output_min, c.output_max);
  }
  Tensor dx = Linear(w, &g).backward(tape.in, d);
  if (clips(c.input_min, c.input_max)) ops::clamp_backward_(dx, x, c.input_min, c.input_max);
  return dx;
}

Tensor encoder_layer(const VisionConfig& c, const VisionLayerWeights& w, const Tensor& h,
                     const AxisTables& q_rope, const AxisTables& k_rope, VisionLayerTape& t) {
  const std::int64_t N = h.dim(0);
  const int D = c.head_dim, Nq = c.num_attention_heads, Nkv = c.num_key_value_heads;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  t.h_in = h;
  t.a = ops::rms_norm(h, w.input_norm, eps);
  t.q_raw = clipped_forward(w.q_proj, w.q_clip, t.a, t.q_clip).reshaped({N, Nq, D});
  t.k_raw = clipped_forward(w.k_proj, w.k_clip, t.a, t.k_clip).reshaped({N, Nkv, D});
  t.v_raw = clipped_forward(w.v_proj, w.v_clip, t.a, t.v_clip).reshaped({N, Nkv, D});
  t.q = ops::rms_norm(t.q_raw, w.q_norm, eps);
  t.k = ops::rms_norm(t.k_raw, w.k_norm, eps);
  t.v = ops::rms_norm(t.v_raw, Tensor(), eps);
  rope_2d_(t.q, q_rope);
  rope_2d_(t.k, k_rope);
  const AttentionVisibility all = every_patch(N);
  t.o = ops::attention(t.q, t.k, t.v, std::span(&all, 1)).reshaped({N, Nq * D});
  t.attn_out = clipped_forward(w.o_proj, w.o_clip, t.o, t.o_clip);
  t.mid = ops::copy(h);
  ops::add_(t.mid, ops::rms_norm(t.attn_out, w.post_attention_norm, eps));
  t.m = ops::rms_norm(t.mid, w.pre_feedforward_norm, eps);
  t.gate = clipped_forward(w.gate_proj, w.gate_clip, t.m, t.gate_clip);
  t.up = clipped_forward(w.up_proj, w.up_clip, t.m, t.up_clip);
  t.act = ops::geglu(t.gate, t.up);
  t.down_out = clipped_forward(w.down_proj, w.down_clip, t.act, t.down_clip);
  Tensor out = ops::copy(t.mid);
  ops::add_(out, ops::rms_norm(t.down_out, w.post_feedforward_norm, eps));
  return out;
}

// Returns d(layer input) from d(layer output); parameter gradients accumulate into g.
Tensor encoder_layer_backward(const VisionConfig& c, const VisionLayerWeights& w, const VisionLayerTape& t,
                              const Tensor& dout, const AxisTables& q_rope, const AxisTables& k_rope,
                              VisionLayerWeights& g) {
  const std::int64_t N = t.h_in.dim(0);
  const int D = c.head_dim, Nq = c.num_attention_heads, Nkv = c.num_key_value_heads;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  Tensor unused;
  // MLP branch: out = mid + post_ff(down(geglu(gate(m), up(m)))), m = pre_ff(mid).
  const Tensor d_down =
      ops::rms_norm_backward(t.down_out, w.post_feedforward_norm, dout, g.post_feedforward_norm, eps);
  const Tensor d_act = clipped_backward(w.down_proj, g.down_proj, w.down_clip, t.act, t.down_clip, d_down);
  const ops::GegluGrads d_geglu = ops::geglu_backward(t.gate, t.up, d_act);
  Tensor d_m = clipped_backward(w.gate_proj, g.gate_proj, w.gate_clip, t.m, t.gate_clip, d_geglu.gate);
  ops::add_(d_m, clipped_backward(w.up_proj, g.up_proj, w.up_clip, t.m, t.up_clip, d_geglu.up));
  Tensor d_mid = ops::rms_norm_backward(t.mid, w.pre_feedforward_norm, d_m, g.pre_feedforward_norm, eps);
  ops::add_(d_mid, dout);
  // Attention branch: mid = h + post_attn(o_proj(o)).
  const Tensor d_attn =
      ops::rms_norm_backward(t.attn_out, w.post_attention_norm, d_mid, g.post_attention_norm, eps);
  const Tensor d_o =
      clipped_backward(w.o_proj, g.o_proj, w.o_clip, t.o, t.o_clip, d_attn).reshaped({N, Nq, D});
  Tensor dk = ops::zeros({N, Nkv, D}, t.h_in.device(), t.h_in.dtype());
  Tensor dv = ops::zeros({N, Nkv, D}, t.h_in.device(), t.h_in.dtype());
  const AttentionVisibility all = every_patch(N);
  Tensor dq = ops::attention_backward(t.q, t.k, t.v, std::span(&all, 1), d_o, dk, dv);
  rope_2d_(dq, q_rope, /*backward=*/true);
  rope_2d_(dk, k_rope, /*backward=*/true);
  const Tensor dq_raw = ops::rms_norm_backward(t.q_raw, w.q_norm, dq, g.q_norm, eps).reshaped({N, Nq * D});
  const Tensor dk_raw = ops::rms_norm_backward(t.k_raw, w.k_norm, dk, g.k_norm, eps).reshaped({N, Nkv * D});
  const Tensor dv_raw = ops::rms_norm_backward(t.v_raw, Tensor(), dv, unused, eps).reshaped({N, Nkv * D});
  Tensor d_a = clipped_backward(w.q_proj, g.q_proj, w.q_clip, t.a, t.q_clip, dq_raw);
  ops::add_(d_a, clipped_backward(w.k_proj, g.k_proj, w.k_clip, t.a, t.k_clip, dk_raw));
  ops::add_(d_a, clipped_backward(w.v_proj, g.v_proj, w.v_clip, t.a, t.v_clip, dv_raw));
  Tensor d_h = ops::rms_norm_backward(t.h_in, w.input_norm, d_a, g.input_norm, eps);
  ops::add_(d_h, d_mid);
  return d_h;
}

}  // namespace

VisionOutput vision_forward(const VisionConfig& c, const VisionWeights& w, const Tensor& patches,
                            std::span<const std::int64_t> xs, std::span<const std::int64_t> ys,
                            VisionTape* tape) {
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
  const Tensor minus_ones = ops::scaled(ones_column(patches.dim(1), patches), -1.0f);
  add_row_(centred, minus_ones);
  Tensor h = Linear(w.input_proj).forward(centred);
  const std::int64_t P = c.position_embedding_size;
  const Tensor table = w.position_table.reshaped({2 * P, H});
  ops::add_(h, ops::embedding(table.rows(0, P), xs, 1.0f, "position_embedding_size"));
  ops::add_(h, ops::embedding(table.rows(P, P), ys, 1.0f, "position_embedding_size"));

  const AxisTables q_rope = axis_tables(c, xs, ys, c.num_attention_heads);
  const AxisTables k_rope = axis_tables(c, xs, ys, c.num_key_value_heads);
  if (tape) {
    tape->centred = centred;
    tape->xs.assign(xs.begin(), xs.end());
    tape->ys.assign(ys.begin(), ys.end());
    tape->layers.assign(w.layers.size(), {});
  }
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    VisionLayerTape scratch;  // without a tape each layer's activations go when the next layer starts
    h = encoder_layer(c, w.layers[l], h, q_rope, k_rope, tape ? tape->layers[l] : scratch);
  }

  // k×k average pooling by position: soft token floor(x/k) + (columns/k)·floor(y/k) sums its k² patches
  // (embedding_backward is that scatter-add of rows), each weighted 1/k²; then × sqrt(H).
  const std::int64_t L = N / (k * k);
  Tensor features = h;
  std::vector<std::int64_t> soft_token;
  if (L != N) {
    for (std::int64_t i = 0; i < N; ++i) soft_token.push_back(xs[i] / k + (columns / k) * (ys[i] / k));
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
  if (tape) {
    tape->h_last = h;
    tape->soft_token = soft_token;
    tape->features = features;
  }
  return {features, Linear(w.embed_projection).forward(normed)};
}

void vision_backward(const VisionConfig& c, const VisionWeights& w, const VisionTape& t, const Tensor& d_soft,
                     VisionWeights& g) {
  const std::int64_t H = c.hidden_size, k = c.pooling_kernel_size;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  Tensor unused;
  const Tensor normed = ops::rms_norm(t.features, Tensor(), eps);
  const Tensor d_normed = Linear(w.embed_projection, &g.embed_projection).backward(normed, d_soft);
  Tensor d_features = ops::rms_norm_backward(t.features, Tensor(), d_normed, unused, eps);
  // The diagonal std_scale is symmetric: d(before) = d(after) · diag(std_scale).
  if (c.standardize) d_features = ops::linear(d_features, w.std_scale);
  ops::scale_(d_features, static_cast<float>(std::sqrt(static_cast<double>(H))));
  // Pooling's backward: every patch receives its soft token's gradient / k².
  Tensor d_h = t.soft_token.empty() ? d_features
                                    : ops::embedding(d_features, t.soft_token,
                                                     1.0f / static_cast<float>(k * k), "pooled tokens");
  const AxisTables q_rope = axis_tables(c, t.xs, t.ys, c.num_attention_heads);
  const AxisTables k_rope = axis_tables(c, t.xs, t.ys, c.num_key_value_heads);
  for (std::size_t l = w.layers.size(); l-- > 0;)
    d_h = encoder_layer_backward(c, w.layers[l], t.layers[l], d_h, q_rope, k_rope, g.layers[l]);
  // Patch embedding.
  const std::int64_t P = c.position_embedding_size;
  Tensor table = g.position_table.reshaped({2 * P, H});
  Tensor by_x = table.rows(0, P), by_y = table.rows(P, P);
  ops::embedding_backward(d_h, t.xs, 1.0f, by_x);
  ops::embedding_backward(d_h, t.ys, 1.0f, by_y);
  ops::linear_backward_weight(d_h, t.centred, g.input_proj);
}

VisionWeights vision_zeros_like(const VisionWeights& w) {
  const auto zeros = [](const Tensor& t) { return ops::zeros(t.shape(), t.device(), DType::f32); };
  VisionWeights g;
  g.input_proj = zeros(w.input_proj);
  g.position_table = zeros(w.position_table);
  for (const VisionLayerWeights& l : w.layers) {
    VisionLayerWeights& z = g.layers.emplace_back();
    for (auto [dst, src] : {std::pair{&z.input_norm, &l.input_norm},
                            {&z.post_attention_norm, &l.post_attention_norm},
                            {&z.pre_feedforward_norm, &l.pre_feedforward_norm},
                            {&z.post_feedforward_norm, &l.post_feedforward_norm},
                            {&z.q_proj, &l.q_proj},
                            {&z.k_proj, &l.k_proj},
                            {&z.v_proj, &l.v_proj},
                            {&z.o_proj, &l.o_proj},
                            {&z.q_norm, &l.q_norm},
                            {&z.k_norm, &l.k_norm},
                            {&z.gate_proj, &l.gate_proj},
                            {&z.up_proj, &l.up_proj},
                            {&z.down_proj, &l.down_proj}})
      *dst = zeros(*src);
  }
  g.embed_projection = zeros(w.embed_projection);
  return g;
}

}  // namespace g4
