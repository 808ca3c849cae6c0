// vision_tower.h: Gemma 4's vision tower and its projection into the text model (Gemma4VisionModel +
// embed_vision; hf_transformers_gemma4.md §4.3), forward, written against ops/ops.h:
//   patches (pixel values in [0, 1], [N, 3·p²]) → input_proj(2·x − 1) + pos_x[x] + pos_y[y]
//   → encoder layers (bidirectional attention with q/k norms, a weightless v norm and the 2-D RoPE: the first
//     head_dim/2 channels rotate with the patch's x, the rest with its y; GEGLU MLP; four norms per layer)
//   → k×k average pooling by patch position (k² patches per soft token) × sqrt(hidden)
//   → standardisation (h − std_bias) · std_scale when the config asks
//   → embed_vision: weightless RMSNorm, then a projection to the text width.
// One image per call (no padding patches). Its patch grid must be a multiple of the pooling kernel in both
// directions, as the image processor makes it.
//
// Backward: parameter gradients accumulate (+=) into a VisionWeights of gradients shaped like the weights
// (the standardisation is a buffer, not trained).
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "core/gemma4_config.h"
#include "core/tensor.h"

namespace g4 {

// The bounds of a clipped projection (Gemma4ClippableLinear, vision_config.use_clipped_linears):
// y = clamp(W · clamp(x, input_min, input_max), output_min, output_max); infinite bounds clip nothing.
struct LinearClip {
  float input_min = -std::numeric_limits<float>::infinity(),
        input_max = std::numeric_limits<float>::infinity();
  float output_min = -std::numeric_limits<float>::infinity(),
        output_max = std::numeric_limits<float>::infinity();
};

struct VisionLayerWeights {
  Tensor input_norm, post_attention_norm, pre_feedforward_norm, post_feedforward_norm;  // [H]
  Tensor q_proj, k_proj, v_proj, o_proj;                                                // HF layout [out, in]
  Tensor q_norm, k_norm;                                                                // [head_dim]
  Tensor gate_proj, up_proj, down_proj;
  LinearClip q_clip, k_clip, v_clip, o_clip, gate_clip, up_clip, down_clip;  // not trained
};

struct VisionWeights {
  Tensor input_proj;      // [H, 3·p²]
  Tensor position_table;  // [2, position_embedding_size, H]: x rows, then y rows
  std::vector<VisionLayerWeights> layers;
  // Standardisation (when the config asks), in the form the tower applies it: std_shift = −std_bias as a
  // column [H, 1], std_scale as a diagonal matrix [H, H] (model loading builds both).
  Tensor std_shift, std_scale;
  Tensor embed_projection;  // [text hidden, H] (embed_vision.embedding_projection)
};

// What the tower gives for one image: the pooled, scaled (and standardised) features [N/k², H] and the soft
// tokens [N/k², text hidden] that replace the image's placeholders.
struct VisionOutput {
  Tensor features, soft_tokens;
};

// A clipped projection's input after its clamp (the weight gradient's x) and output before its clamp (empty
// when the output is not clipped).
struct ClipTape {
  Tensor in, out_raw;
};
struct VisionLayerTape {
  Tensor h_in, a, q_raw, k_raw, v_raw, q, k, v, o, attn_out, mid, m, gate, up, act, down_out;
  ClipTape q_clip, k_clip, v_clip, o_clip, gate_clip, up_clip, down_clip;
};
struct VisionTape {
  Tensor centred;                    // 2x − 1, input_proj's input
  std::vector<std::int64_t> xs, ys;  // patch positions
  std::vector<VisionLayerTape> layers;
  Tensor h_last;                         // the encoder's output [N, H]
  std::vector<std::int64_t> soft_token;  // the pooled token of each patch (empty: no pooling)
  Tensor features;                       // standardised features, embed_vision's input
};

// patches [N, 3·p²] in the compute dtype on the weights' device; xs, ys: each patch's column and row.
// `tape` (optional) keeps what vision_backward needs.
VisionOutput vision_forward(const VisionConfig& config, const VisionWeights& weights, const Tensor& patches,
                            std::span<const std::int64_t> xs, std::span<const std::int64_t> ys,
                            VisionTape* tape = nullptr);

// Adds into `grads` the gradient of Σ soft_tokens · d_soft_tokens (d_soft_tokens [N/k², text hidden]).
void vision_backward(const VisionConfig& config, const VisionWeights& weights, const VisionTape& tape,
                     const Tensor& d_soft_tokens, VisionWeights& grads);

// Zero gradients shaped like `weights` (the standardisation left empty).
VisionWeights vision_zeros_like(const VisionWeights& weights);

}  // namespace g4
