// state_dict_adapter.h: Gemma 4 MoE weights between the Hugging Face layout and g4moe's native (NeMo)
// layout (NeMo Gemma4MoEStateDictAdapter, the note's §5), for whole state dicts, one tensor at a time
// (streaming conversion), for expert-parallel shards, and for gradients.
//
// Per MoE layer, P = "<text prefix>layers.N" (e.g. "model.layers.3" or "model.language_model.layers.3"):
//   HF  P.router.proj.weight [E,H]         ↔ native P.moe.gate.proj.weight [E,H]          rename
//   HF  P.router.scale [H]                 ↔ native P.moe.gate.scale [H]                  rename
//   HF  P.experts.gate_up_proj [E,2I,H]    ↔ native P.moe.experts.gate_and_up_projs [E,H,2I]  transpose
//   HF  P.experts.down_proj [E,H,I]        ↔ native P.moe.experts.down_projs [E,I,H]     transpose, ×
//   per_expert_scale[e] HF  P.router.per_expert_scale [E]      ↔ (folded into down_projs; to_hf writes ones)
// from_hf also accepts the older key forms P.moe.{gate_up_proj,down_proj,per_expert_scale} and
// P.experts.per_expert_scale. Every other tensor passes through unchanged (same name, same bytes).
// Native names keep the checkpoint's own text prefix (NeMo rebuilds expert keys as
// "model.language_model.…"; for the released layout that is the same name).
//
// Invariants: renames and transposes are bit-exact in every dtype; the fold multiplies in float (double for
// F64) and rounds once to the tensor's dtype, so HF → native → HF is bit-exact except down_proj and
// per_expert_scale of layers whose scales differ from 1. A layer with only one of gate_up_proj/down_proj (or
// a per_expert_scale without experts) is a g4::Error; a missing per_expert_scale means ones, and the log says
// so.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace g4 {

using StateDict = std::map<std::string, Tensor>;
using AdapterLog = std::function<void(const std::string&)>;

// ---- expert parallelism: contiguous blocks; with E = q·ep + r, ranks < r hold q+1 experts ----
struct ExpertRange {
  std::int64_t start = 0;
  std::int64_t count = 0;
};
ExpertRange expert_range(std::int64_t num_experts, std::int64_t ep_size, std::int64_t ep_rank);
// Rows [range.start, range.start + range.count) of dim 0.
Tensor slice_experts(const Tensor& full, ExpertRange range);
// Concatenates every rank's slice along dim 0; slices[r] must hold expert_range(E, ep, r).count experts.
Tensor gather_experts(const std::vector<Tensor>& slices);

struct AdapterOptions {
  std::int64_t ep_size = 1;
  std::int64_t ep_rank = 0;
  AdapterLog log;           // receives notes (a missing per_expert_scale); nullptr: stderr
  std::string text_prefix;  // if set, only names under it are MoE keys (the vision tower also has "layers.N")
};

// ---- the per-tensor plan (what convert streams) ----
enum class Layout { hf, native };

struct TensorMeta {
  DType dtype = DType::f32;
  Shape shape;
};

struct ConversionStep {
  enum class Op { copy, transpose, transpose_fold_scale, ones };
  Op op = Op::copy;
  std::string out_name;
  DType dtype = DType::f32;
  Shape shape;               // of the output
  std::string source;        // input tensor (empty for `ones`)
  std::string scale_source;  // transpose_fold_scale: the per_expert_scale tensor, empty = ones
  ExpertRange experts;       // expert rows of the source to keep (dim 0); count 0 = all
};

// Which layout a set of tensor names is in; g4::Error when it holds both MoE key forms.
Layout detect_layout(const std::vector<std::string>& names);

// The steps that turn `inputs` (in the layout opposite to `to`) into `to`, in output order (input name order;
// per_expert_scale emitted after its down_proj). Validates names and shapes; `where` names the source in
// errors.
std::vector<ConversionStep> plan_conversion(const std::map<std::string, TensorMeta>& inputs, Layout to,
                                            const AdapterOptions& opts, const std::string& where);

// A borrowed input tensor (e.g. a memory-mapped checkpoint view): valid while the step runs.
struct TensorSource {
  DType dtype = DType::f32;
  Shape shape;
  const std::byte* data = nullptr;
};

// Runs one step; `read` returns an input tensor by name (only the named ones are read). The views overload
// copies nothing it does not have to: a transpose reads the source in place and allocates only the output.
Tensor run_conversion_step(const ConversionStep& step,
                           const std::function<TensorSource(const std::string&)>& read);
Tensor run_conversion_step(const ConversionStep& step, const std::function<Tensor(const std::string&)>& read);

// ---- whole state dicts ----
StateDict gemma4_moe_from_hf(const StateDict& hf, const AdapterOptions& opts = {});
// Expects full (gathered) expert tensors; per_expert_scale is written as ones of the down_projs' dtype.
StateDict gemma4_moe_to_hf(const StateDict& native, const AdapterOptions& opts = {});
// One native tensor → its HF tensor(s); down_projs also yields per_expert_scale = ones(local expert count).
std::vector<std::pair<std::string, Tensor>> convert_single_tensor_to_hf(const std::string& name,
                                                                        const Tensor& tensor);

// ---- gradients: native → HF parametrisation ----
// With D_native[e,i,h] = D_hf[e,h,i]·s_e:  dL/dD_hf[e,h,i] = s_e·G[e,i,h],  dL/ds_e = Σ_{i,h}
// G[e,i,h]·D_hf[e,h,i]. `hf_weights` must hold each layer's HF down_proj and (optionally; ones otherwise)
// per_expert_scale. Other gradients are renamed/transposed like weights. Output is F32 (F64 if the gradient
// is F64).
StateDict gemma4_moe_grads_to_hf(const StateDict& native_grads, const StateDict& hf_weights);

}  // namespace g4
