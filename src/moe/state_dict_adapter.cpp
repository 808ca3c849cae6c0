#include "moe/state_dict_adapter.h"

#include <algorithm>
#include <cstring>
#include <iostream>
#include <set>
#include "core/regex.h"

#include "core/error.h"

namespace g4 {

// ---------------------------------------------------------------- expert parallelism

ExpertRange expert_range(std::int64_t num_experts, std::int64_t ep_size, std::int64_t ep_rank) {
  check(ep_size >= 1 && ep_rank >= 0 && ep_rank < ep_size, "expert parallel rank ", ep_rank,
        " is not in [0, ", ep_size, ")");
  check(num_experts >= ep_size, "cannot spread ", num_experts, " experts over ", ep_size,
        " expert-parallel ranks");
  const std::int64_t per = num_experts / ep_size, rem = num_experts % ep_size;
  if (ep_rank < rem) return {ep_rank * (per + 1), per + 1};
  return {ep_rank * per + rem, per};
}

Tensor slice_experts(const Tensor& full, ExpertRange range) {
  check(full.rank() >= 1 && range.start >= 0 && range.count >= 0 && range.start + range.count <= full.dim(0),
        "expert slice [", range.start, ", ", range.start + range.count, ") is outside a tensor of shape ",
        shape_str(full.shape()));
  Shape shape = full.shape();
  shape[0] = range.count;
  const std::size_t row = full.nbytes() / static_cast<std::size_t>(full.dim(0));
  return Tensor::from_bytes(full.dtype(), shape, full.bytes() + row * static_cast<std::size_t>(range.start));
}

Tensor gather_experts(const std::vector<Tensor>& slices) {
  check(!slices.empty(), "gather_experts: no slices");
  std::int64_t total = 0;
  for (const Tensor& s : slices) {
    check(s.rank() == slices[0].rank() && s.dtype() == slices[0].dtype(),
          "gather_experts: slices differ in rank or dtype");
    for (int d = 1; d < s.rank(); ++d)
      check(s.dim(d) == slices[0].dim(d), "gather_experts: slice shapes ", shape_str(s.shape()), " and ",
            shape_str(slices[0].shape()), " differ beyond dim 0");
    total += s.dim(0);
  }
  const std::int64_t ep = static_cast<std::int64_t>(slices.size());
  for (std::int64_t r = 0; r < ep; ++r)
    check(slices[r].dim(0) == expert_range(total, ep, r).count, "gather_experts: rank ", r, " holds ",
          slices[r].dim(0), " experts, expected ", expert_range(total, ep, r).count);
  Shape shape = slices[0].shape();
  shape[0] = total;
  Tensor out(slices[0].dtype(), shape);
  std::size_t offset = 0;
  for (const Tensor& s : slices) {
    if (s.nbytes()) std::memcpy(out.bytes() + offset, s.bytes(), s.nbytes());
    offset += s.nbytes();
  }
  return out;
}

// ---------------------------------------------------------------- names

namespace {

enum class Kind {
  other,
  hf_router_proj,
  hf_router_scale,
  hf_per_expert_scale,
  hf_gate_up,
  hf_down,
  native_gate_proj,
  native_gate_scale,
  native_gate_and_up,
  native_down
};

struct Key {
  Kind kind = Kind::other;
  std::string layer;  // "<prefix>layers.N"
};

Key classify(const std::string& name, const std::string& prefix = "") {
  if (!prefix.empty() && name.rfind(prefix, 0) != 0) return {};
  static const std::regex hf_router(R"(^(.*layers\.\d+)\.router\.(proj\.weight|scale|per_expert_scale)$)");
  static const std::regex hf_experts(
      R"(^(.*layers\.\d+)\.(moe|experts)\.(gate_up_proj|down_proj|per_expert_scale)$)");
  static const std::regex native_gate(R"(^(.*layers\.\d+)\.moe\.gate\.(proj\.weight|scale)$)");
  static const std::regex native_experts(
      R"(^(.*layers\.\d+)\.moe\.experts\.(gate_and_up_projs|down_projs)$)");
  std::smatch m;
  if (std::regex_match(name, m, hf_router)) {
    const std::string w = m[2];
    return {w == "proj.weight" ? Kind::hf_router_proj
            : w == "scale"     ? Kind::hf_router_scale
                               : Kind::hf_per_expert_scale,
            m[1]};
  }
  if (std::regex_match(name, m, hf_experts)) {
    const std::string w = m[3];
    return {w == "gate_up_proj" ? Kind::hf_gate_up
            : w == "down_proj"  ? Kind::hf_down
                                : Kind::hf_per_expert_scale,
            m[1]};
  }
  if (std::regex_match(name, m, native_gate))
    return {std::string(m[2]) == "scale" ? Kind::native_gate_scale : Kind::native_gate_proj, m[1]};
  if (std::regex_match(name, m, native_experts))
    return {std::string(m[2]) == "down_projs" ? Kind::native_down : Kind::native_gate_and_up, m[1]};
  return {};
}

bool is_hf_moe(Kind k) {
  return k == Kind::hf_router_proj || k == Kind::hf_router_scale || k == Kind::hf_per_expert_scale ||
         k == Kind::hf_gate_up || k == Kind::hf_down;
}
bool is_native_moe(Kind k) {
  return k == Kind::native_gate_proj || k == Kind::native_gate_scale || k == Kind::native_gate_and_up ||
         k == Kind::native_down;
}

std::string native_gate_proj(const std::string& layer) {
  return layer + ".moe.gate.proj.weight";
}
std::string native_gate_scale(const std::string& layer) {
  return layer + ".moe.gate.scale";
}
std::string native_gate_and_up(const std::string& layer) {
  return layer + ".moe.experts.gate_and_up_projs";
}
std::string native_down(const std::string& layer) {
  return layer + ".moe.experts.down_projs";
}
std::string hf_router_proj(const std::string& layer) {
  return layer + ".router.proj.weight";
}
std::string hf_router_scale(const std::string& layer) {
  return layer + ".router.scale";
}
std::string hf_per_expert_scale(const std::string& layer) {
  return layer + ".router.per_expert_scale";
}
std::string hf_gate_up(const std::string& layer) {
  return layer + ".experts.gate_up_proj";
}
std::string hf_down(const std::string& layer) {
  return layer + ".experts.down_proj";
}

void default_log(const std::string& line) {
  std::cerr << "g4moe: note: " << line << "\n";
}

void check_rank3(const std::string& name, const TensorMeta& m, const std::string& where) {
  check(m.shape.size() == 3, "tensor ", name, " has shape ", shape_str(m.shape), ", expected 3 dims (", where,
        ")");
  check(dtype_is_float(m.dtype), "tensor ", name, " has dtype ", dtype_name(m.dtype),
        ", expected a float type (", where, ")");
}

struct HfLayer {
  std::string gate_up, down, scale;
};

}  // namespace

Layout detect_layout(const std::vector<std::string>& names) {
  std::string hf, native;
  for (const std::string& n : names) {
    const Kind k = classify(n).kind;
    if (is_hf_moe(k) && hf.empty()) hf = n;
    if (is_native_moe(k) && native.empty()) native = n;
  }
  check(hf.empty() || native.empty(), "checkpoint mixes the HF MoE layout (", hf, ") and the native one (",
        native, ")");
  return native.empty() ? Layout::hf : Layout::native;
}

// ---------------------------------------------------------------- planning

std::vector<ConversionStep> plan_conversion(const std::map<std::string, TensorMeta>& inputs, Layout to,
                                            const AdapterOptions& opts, const std::string& where) {
  std::vector<std::string> names;
  for (const auto& [n, m] : inputs) names.push_back(n);
  std::vector<std::string> moe_names;
  for (const std::string& n : names)
    if (classify(n, opts.text_prefix).kind != Kind::other) moe_names.push_back(n);
  const Layout from = detect_layout(moe_names);
  bool has_moe = false;
  for (const std::string& n : names) has_moe = has_moe || classify(n, opts.text_prefix).kind != Kind::other;
  check(!has_moe || from != to, "the checkpoint is already in the ", to == Layout::hf ? "HF" : "native",
        " layout (", where, ")");
  const AdapterLog log = opts.log ? opts.log : AdapterLog(default_log);
  std::vector<ConversionStep> steps;
  auto copy_as = [&](const std::string& in, const std::string& out) {
    ConversionStep s;
    s.op = ConversionStep::Op::copy;
    s.out_name = out;
    s.dtype = inputs.at(in).dtype;
    s.shape = inputs.at(in).shape;
    s.source = in;
    steps.push_back(s);
  };

  if (to == Layout::native) {
    std::map<std::string, HfLayer> layers;
    for (const std::string& n : names) {
      const Key k = classify(n, opts.text_prefix);
      HfLayer& l = layers[k.layer];
      std::string* slot = k.kind == Kind::hf_gate_up            ? &l.gate_up
                          : k.kind == Kind::hf_down             ? &l.down
                          : k.kind == Kind::hf_per_expert_scale ? &l.scale
                                                                : nullptr;
      if (!slot) continue;
      check(slot->empty(), "layer ", k.layer, " has both ", *slot, " and ", n, " (", where, ")");
      *slot = n;
    }
    layers.erase("");
    for (const auto& [layer, l] : layers) {
      if (l.gate_up.empty() && l.down.empty() && l.scale.empty()) continue;
      check(!l.gate_up.empty() && !l.down.empty(), "incomplete expert weights in ", layer, ": ",
            l.gate_up.empty() ? "no experts.gate_up_proj" : "no experts.down_proj", " (", where, ")");
      const TensorMeta &gu = inputs.at(l.gate_up), &dn = inputs.at(l.down);
      check_rank3(l.gate_up, gu, where);
      check_rank3(l.down, dn, where);
      const std::int64_t E = gu.shape[0], I = dn.shape[2], H = dn.shape[1];
      check(dn.shape[0] == E && gu.shape[1] == 2 * I && gu.shape[2] == H, "expert weights of ", layer,
            " disagree: gate_up_proj ", shape_str(gu.shape), " and down_proj ", shape_str(dn.shape),
            " (expected [E, 2I, H] and [E, H, I]) (", where, ")");
      if (!l.scale.empty()) {
        const TensorMeta& sc = inputs.at(l.scale);
        check(sc.shape == Shape{E} && dtype_is_float(sc.dtype), "tensor ", l.scale, " has shape ",
              shape_str(sc.shape), " and dtype ", dtype_name(sc.dtype), ", expected [", E, "] floats (",
              where, ")");
      }
    }
    for (const std::string& n : names) {
      const Key k = classify(n, opts.text_prefix);
      const TensorMeta& m = inputs.at(n);
      switch (k.kind) {
        case Kind::hf_router_proj:
          copy_as(n, native_gate_proj(k.layer));
          break;
        case Kind::hf_router_scale:
          copy_as(n, native_gate_scale(k.layer));
          break;
        case Kind::hf_per_expert_scale:
          break;  // folded into down_projs
        case Kind::hf_gate_up:
        case Kind::hf_down: {
          const bool down = k.kind == Kind::hf_down;
          ConversionStep s;
          s.op = down ? ConversionStep::Op::transpose_fold_scale : ConversionStep::Op::transpose;
          s.out_name = down ? native_down(k.layer) : native_gate_and_up(k.layer);
          s.dtype = m.dtype;
          s.source = n;
          s.experts = expert_range(m.shape[0], opts.ep_size, opts.ep_rank);
          s.shape = {s.experts.count, m.shape[2], m.shape[1]};
          if (down) {
            s.scale_source = layers[k.layer].scale;
            if (s.scale_source.empty())
              log(k.layer + " has no router.per_expert_scale in " + where + "; using ones");
          }
          steps.push_back(s);
          break;
        }
        default:
          copy_as(n, n);
      }
    }
    return steps;
  }

  // native → HF
  std::map<std::string, std::pair<std::string, std::string>> experts;  // layer -> (gate_and_up, down)
  for (const std::string& n : names) {
    const Key k = classify(n, opts.text_prefix);
    if (k.kind == Kind::native_gate_and_up) experts[k.layer].first = n;
    if (k.kind == Kind::native_down) experts[k.layer].second = n;
  }
  for (const auto& [layer, p] : experts) {
    check(!p.first.empty() && !p.second.empty(), "incomplete expert weights in ", layer, ": ",
          p.first.empty() ? "no moe.experts.gate_and_up_projs" : "no moe.experts.down_projs", " (", where,
          ")");
    const TensorMeta &gu = inputs.at(p.first), &dn = inputs.at(p.second);
    check_rank3(p.first, gu, where);
    check_rank3(p.second, dn, where);
    check(dn.shape[0] == gu.shape[0] && gu.shape[2] == 2 * dn.shape[1] && gu.shape[1] == dn.shape[2],
          "expert weights of ", layer, " disagree: gate_and_up_projs ", shape_str(gu.shape),
          " and down_projs ", shape_str(dn.shape), " (expected [E, H, 2I] and [E, I, H]) (", where, ")");
  }
  for (const std::string& n : names) {
    const Key k = classify(n, opts.text_prefix);
    const TensorMeta& m = inputs.at(n);
    switch (k.kind) {
      case Kind::native_gate_proj:
        copy_as(n, hf_router_proj(k.layer));
        break;
      case Kind::native_gate_scale:
        copy_as(n, hf_router_scale(k.layer));
        break;
      case Kind::native_gate_and_up:
      case Kind::native_down: {
        const bool down = k.kind == Kind::native_down;
        ConversionStep s;
        s.op = ConversionStep::Op::transpose;
        s.out_name = down ? hf_down(k.layer) : hf_gate_up(k.layer);
        s.dtype = m.dtype;
        s.shape = {m.shape[0], m.shape[2], m.shape[1]};
        s.source = n;
        steps.push_back(s);
        if (down) {
          ConversionStep ones;
          ones.op = ConversionStep::Op::ones;
          ones.out_name = hf_per_expert_scale(k.layer);
          ones.dtype = m.dtype;
          ones.shape = {m.shape[0]};
          steps.push_back(ones);
        }
        break;
      }
      default:
        copy_as(n, n);
    }
  }
  return steps;
}

// ---------------------------------------------------------------- execution

namespace {

template <class U>
void transpose_blocks(const U* src, U* dst, std::int64_t experts, std::int64_t A, std::int64_t B) {
  constexpr std::int64_t tile = 32;  // cache blocking: both sides are read/written in 32×32 tiles
  for (std::int64_t e = 0; e < experts; ++e) {
    const U* s = src + e * A * B;
    U* d = dst + e * A * B;
    for (std::int64_t a0 = 0; a0 < A; a0 += tile)
      for (std::int64_t b0 = 0; b0 < B; b0 += tile)
        for (std::int64_t a = a0; a < std::min(A, a0 + tile); ++a)
          for (std::int64_t b = b0; b < std::min(B, b0 + tile); ++b) d[b * A + a] = s[a * B + b];
  }
}

// out[e, b, a] = in[start + e, a, b]  for e < count, copying whole elements (bit-exact in every dtype).
Tensor transpose_experts(const TensorSource& in, ExpertRange r) {
  check(in.shape.size() == 3, "transpose: expected 3 dims, got ", shape_str(in.shape));
  const std::int64_t A = in.shape[1], B = in.shape[2];
  if (r.count == 0 && r.start == 0) r.count = in.shape[0];
  Tensor out(in.dtype, {r.count, B, A});
  const std::size_t es = dtype_size(in.dtype);
  const std::byte* src = in.data + static_cast<std::size_t>(r.start * A * B) * es;
  std::byte* dst = out.bytes();
  switch (es) {
    case 1:
      transpose_blocks(reinterpret_cast<const std::uint8_t*>(src), reinterpret_cast<std::uint8_t*>(dst),
                       r.count, A, B);
      break;
    case 2:
      transpose_blocks(reinterpret_cast<const std::uint16_t*>(src), reinterpret_cast<std::uint16_t*>(dst),
                       r.count, A, B);
      break;
    case 4:
      transpose_blocks(reinterpret_cast<const std::uint32_t*>(src), reinterpret_cast<std::uint32_t*>(dst),
                       r.count, A, B);
      break;
    case 8:
      transpose_blocks(reinterpret_cast<const std::uint64_t*>(src), reinterpret_cast<std::uint64_t*>(dst),
                       r.count, A, B);
      break;
    default:
      fail("transpose: unsupported element size ", es);
  }
  return out;
}

Tensor transpose_experts(const Tensor& in, ExpertRange r) {
  return transpose_experts(TensorSource{in.dtype(), in.shape(), in.bytes()}, r);
}

Tensor ones_like_meta(DType dtype, const Shape& shape) {
  Tensor f(DType::f32, shape);
  for (std::int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = 1.0f;
  return dtype == DType::f32 ? f : f.to_dtype(dtype);
}

// t[e, ...] *= scale[e_first + e], computed in float (double for F64) and rounded once to t's dtype.
Tensor scale_experts(const Tensor& t, const Tensor& scale, std::int64_t first) {
  const std::int64_t per = t.numel() / std::max<std::int64_t>(1, t.dim(0));
  if (t.dtype() == DType::f64) {
    Tensor out = t.clone();
    const Tensor s = scale.dtype() == DType::f64 ? scale : scale.to_f32();
    for (std::int64_t e = 0; e < t.dim(0); ++e) {
      const double v = s.dtype() == DType::f64 ? s.f64()[first + e] : s.f32()[first + e];
      for (std::int64_t i = 0; i < per; ++i) out.f64()[e * per + i] *= v;
    }
    return out;
  }
  // In place on t (a fresh transposed tensor), one element at a time: no widened copy of the whole tensor.
  const Tensor s = scale.to_f32();
  Tensor out = t;
  for (std::int64_t e = 0; e < t.dim(0); ++e) {
    const float v = s.f32()[first + e];
    if (t.dtype() == DType::f32) {
      float* p = out.f32() + e * per;
      for (std::int64_t i = 0; i < per; ++i) p[i] *= v;
    } else if (t.dtype() == DType::bf16 || t.dtype() == DType::f16) {
      auto* p = reinterpret_cast<std::uint16_t*>(out.bytes()) + e * per;
      const bool bf = t.dtype() == DType::bf16;
      for (std::int64_t i = 0; i < per; ++i)
        p[i] = bf ? f32_to_bf16(bf16_to_f32(p[i]) * v) : f32_to_f16(f16_to_f32(p[i]) * v);
    } else {
      fail("cannot fold per_expert_scale into a tensor of dtype ", dtype_name(t.dtype()));
    }
  }
  return out;
}

}  // namespace

Tensor run_conversion_step(const ConversionStep& step,
                           const std::function<TensorSource(const std::string&)>& read) {
  switch (step.op) {
    case ConversionStep::Op::copy: {
      const TensorSource src = read(step.source);
      return Tensor::from_bytes(src.dtype, src.shape, src.data);
    }
    case ConversionStep::Op::ones:
      return ones_like_meta(step.dtype, step.shape);
    case ConversionStep::Op::transpose:
      return transpose_experts(read(step.source), step.experts);
    case ConversionStep::Op::transpose_fold_scale: {
      const TensorSource src = read(step.source);
      Tensor t = transpose_experts(src, step.experts);
      if (step.scale_source.empty()) return t;
      const TensorSource sv = read(step.scale_source);
      const Tensor scale = Tensor::from_bytes(sv.dtype, sv.shape, sv.data);
      check(scale.numel() == src.shape[0], "tensor ", step.scale_source, " has ", scale.numel(),
            " entries, expected ", src.shape[0]);
      return scale_experts(t, scale, step.experts.start);
    }
  }
  fail("unknown conversion step");
}

Tensor run_conversion_step(const ConversionStep& step,
                           const std::function<Tensor(const std::string&)>& read) {
  std::map<std::string, Tensor> held;  // keeps each read tensor alive while its view is used
  return run_conversion_step(step,
                             std::function<TensorSource(const std::string&)>([&](const std::string& name) {
                               const Tensor& t = held[name] = read(name);
                               return TensorSource{t.dtype(), t.shape(), t.bytes()};
                             }));
}

// ---------------------------------------------------------------- whole state dicts

namespace {

StateDict convert_dict(const StateDict& in, Layout to, const AdapterOptions& opts, const std::string& where) {
  std::map<std::string, TensorMeta> metas;
  for (const auto& [n, t] : in) metas[n] = {t.dtype(), t.shape()};
  StateDict out;
  auto read = [&](const std::string& name) { return in.at(name); };
  for (const ConversionStep& s : plan_conversion(metas, to, opts, where))
    out[s.out_name] = run_conversion_step(s, read);
  return out;
}

}  // namespace

StateDict gemma4_moe_from_hf(const StateDict& hf, const AdapterOptions& opts) {
  return convert_dict(hf, Layout::native, opts, "HF state dict");
}

StateDict gemma4_moe_to_hf(const StateDict& native, const AdapterOptions& opts) {
  return convert_dict(native, Layout::hf, opts, "native state dict");
}

std::vector<std::pair<std::string, Tensor>> convert_single_tensor_to_hf(const std::string& name,
                                                                        const Tensor& tensor) {
  const Key k = classify(name);
  switch (k.kind) {
    case Kind::native_gate_proj:
      return {{hf_router_proj(k.layer), tensor}};
    case Kind::native_gate_scale:
      return {{hf_router_scale(k.layer), tensor}};
    case Kind::native_gate_and_up:
      check(tensor.rank() == 3, "tensor ", name, " has shape ", shape_str(tensor.shape()),
            ", expected 3 dims");
      return {{hf_gate_up(k.layer), transpose_experts(tensor, {})}};
    case Kind::native_down:
      check(tensor.rank() == 3, "tensor ", name, " has shape ", shape_str(tensor.shape()),
            ", expected 3 dims");
      return {{hf_down(k.layer), transpose_experts(tensor, {})},
              {hf_per_expert_scale(k.layer), ones_like_meta(tensor.dtype(), {tensor.dim(0)})}};
    default:
      return {{name, tensor}};
  }
}

// ---------------------------------------------------------------- gradients

StateDict gemma4_moe_grads_to_hf(const StateDict& native_grads, const StateDict& hf_weights) {
  StateDict out;
  for (const auto& [name, g] : native_grads) {
    const Key k = classify(name);
    if (k.kind != Kind::native_down) {
      for (auto& [n, t] : convert_single_tensor_to_hf(name, g)) out[n] = t;
      continue;
    }
    const Tensor* down = nullptr;
    const Tensor* scale = nullptr;
    for (const std::string& n : {hf_down(k.layer), k.layer + ".moe.down_proj"})
      if (hf_weights.count(n)) down = &hf_weights.at(n);
    for (const std::string& n : {hf_per_expert_scale(k.layer), k.layer + ".moe.per_expert_scale",
                                 k.layer + ".experts.per_expert_scale"})
      if (hf_weights.count(n)) scale = &hf_weights.at(n);
    check(down != nullptr, "gradient mapping needs the HF weight ", hf_down(k.layer));
    check(g.rank() == 3, "gradient ", name, " has shape ", shape_str(g.shape()), ", expected 3 dims");
    const std::int64_t E = g.dim(0), I = g.dim(1), H = g.dim(2);
    check(down->shape() == Shape{E, H, I}, "HF weight ", hf_down(k.layer), " has shape ",
          shape_str(down->shape()), ", expected ", shape_str(Shape{E, H, I}));
    check(!scale || scale->numel() == E, "per_expert_scale of ", k.layer, " has ", scale ? scale->numel() : 0,
          " entries, expected ", E);
    const bool f64 = g.dtype() == DType::f64;
    const Tensor gd = f64 ? g : g.to_f32();
    const Tensor dd = down->dtype() == DType::f64 ? *down : down->to_f32();
    Tensor sc;
    if (scale) sc = scale->dtype() == DType::f64 ? *scale : scale->to_f32();
    auto at = [](const Tensor& t, std::int64_t i) {
      return t.dtype() == DType::f64 ? t.f64()[i] : static_cast<double>(t.f32()[i]);
    };
    const DType od = f64 ? DType::f64 : DType::f32;
    Tensor d_down(od, {E, H, I}), d_scale(od, {E});
    for (std::int64_t e = 0; e < E; ++e) {
      const double s = scale ? at(sc, e) : 1.0;
      double ds = 0;
      for (std::int64_t i = 0; i < I; ++i)
        for (std::int64_t h = 0; h < H; ++h) {
          const double gv = at(gd, (e * I + i) * H + h);
          const double v = s * gv;
          if (f64)
            d_down.f64()[(e * H + h) * I + i] = v;
          else
            d_down.f32()[(e * H + h) * I + i] = static_cast<float>(v);
          ds += gv * at(dd, (e * H + h) * I + i);
        }
      if (f64)
        d_scale.f64()[e] = ds;
      else
        d_scale.f32()[e] = static_cast<float>(ds);
    }
    out[hf_down(k.layer)] = d_down;
    out[hf_per_expert_scale(k.layer)] = d_scale;
  }
  return out;
}

}  // namespace g4
