#include "ops/ops.h"

#include <initializer_list>
#include <optional>
#include <string>

#include "core/error.h"
#include "ops/kernels.h"

namespace g4::ops {

namespace {

// The backend of one op call: every tensor (empty ones aside) on one device; the activations in one dtype
// (f32 or bf16), the f32-only tensors (parameter gradients, logits, optimizer state) in f32.
struct Backend {
  const char* op;
  Device device;
  DType dtype;
  // The kernel `entry` of this backend, or the error that the op has no version on this device and dtype.
  template <class F>
  F need(F entry) const {
    if (!entry) fail("op ", op, " has no ", device_name(device), " ", dtype_name(dtype), " version");
    return entry;
  }
  // f(table, S{}) with the kernel table of this device and dtype (S: the activations' storage type).
  template <class F>
  decltype(auto) run(F&& f) const {
    if (dtype == DType::bf16)
      return f(device == Device::cpu ? cpu_bf16_kernels() : cuda_bf16_kernels(), Bf16Bits{});
    return f(device == Device::cpu ? cpu_kernels() : cuda_kernels(), float{});
  }
};

Backend backend(const char* op, std::initializer_list<const Tensor*> activations,
                std::initializer_list<const Tensor*> f32_tensors = {}) {
  std::optional<Device> device;
  std::optional<DType> dtype;
  auto on_device = [&](const Tensor& t) {
    if (device && *device != t.device())
      fail("op ", op, " got tensors on ", device_name(*device), " and on ", device_name(t.device()));
    device = t.device();
  };
  for (const Tensor* t : activations) {
    if (t->empty()) continue;
    on_device(*t);
    if (t->dtype() != DType::f32 && t->dtype() != DType::bf16)
      fail("op ", op, " takes f32 or bf16 tensors, got ", dtype_name(t->dtype()));
    if (dtype && *dtype != t->dtype())
      fail("op ", op, " got ", dtype_name(*dtype), " and ", dtype_name(t->dtype()), " tensors");
    dtype = t->dtype();
  }
  for (const Tensor* t : f32_tensors) {
    if (t->empty()) continue;
    on_device(*t);
    if (t->dtype() != DType::f32)
      fail("op ", op, " takes an f32 ", shape_str(t->shape()), ", got ", dtype_name(t->dtype()));
  }
  return {op, device.value_or(Device::cpu), dtype.value_or(DType::f32)};
}

// A tensor's buffer as the kernels' storage type S, on any device (nullptr when empty).
template <class S>
S* p(Tensor& t) {
  return t.empty() ? nullptr : static_cast<S*>(t.data());
}
template <class S>
const S* p(const Tensor& t) {
  return t.empty() ? nullptr : static_cast<const S*>(t.data());
}
float* f32(Tensor& t) {
  return p<float>(t);
}
const float* f32(const Tensor& t) {
  return p<float>(t);
}

void require_same_numel(const char* op, const Tensor& a, const Tensor& b) {
  if (!(a.numel() == b.numel()))
    fail("op ", op, ": shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
}

// Rows of a [.., K] tensor viewed as a matrix.
std::int64_t rows_of(const Tensor& x, std::int64_t width) {
  return width == 0 ? 0 : x.numel() / width;
}

// An op's fresh output: zero-filled, in `dtype` (the backend's by default), on the backend's device, from
// this thread's activation allocator for it (core/allocator.h).
Tensor output(Shape shape, const Backend& b, std::optional<DType> dtype = std::nullopt) {
  return Tensor(dtype.value_or(b.dtype), std::move(shape), activation_allocator(b.device));
}

Shape with_last(Shape shape, std::int64_t last) {
  shape.back() = last;
  return shape;
}

}  // namespace

#define G4_RUN(b, ...)                        \
  (b).run([&](const auto& kt, auto storage) { \
    using S = decltype(storage);              \
    (void)sizeof(S);                          \
    __VA_ARGS__;                              \
  })

void add_(Tensor& x, const Tensor& y) {
  const Backend b = backend("add_", {&x, &y});
  require_same_numel("add_", x, y);
  G4_RUN(b, b.need(kt.add_inplace)(p<S>(x), p<S>(y), x.numel()));
}

void scale_(Tensor& x, float factor) {
  const Backend b = backend("scale_", {&x});
  G4_RUN(b, b.need(kt.scale_inplace)(p<S>(x), factor, x.numel()));
}

Tensor zeros(Shape shape, Device device, DType dtype) {
  return Tensor(dtype, std::move(shape), activation_allocator(device));  // allocators zero-fill
}

Tensor copy(const Tensor& x) {
  const Backend b = backend("copy", {&x});
  Tensor y = output(x.shape(), b);
  G4_RUN(b, b.need(kt.copy)(p<S>(x), p<S>(y), x.numel()));
  return y;
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  const Backend b = backend("to_dtype", {&x});
  if (dtype == x.dtype()) return copy(x);
  if (dtype != DType::f32 && dtype != DType::bf16)
    fail("op to_dtype converts between f32 and bf16, not to ", dtype_name(dtype));
  Tensor y = output(x.shape(), b, dtype);
  if (dtype == DType::f32) {  // x is bf16
    G4_RUN(b, b.need(kt.to_f32)(p<S>(x), f32(y), x.numel()));
  } else {
    const Backend to = backend("to_dtype", {&y});
    G4_RUN(to, to.need(kt.from_f32)(f32(x), p<S>(y), x.numel()));
  }
  return y;
}

void assign_(Tensor& dst, const Tensor& src) {
  require_same_numel("assign_", dst, src);
  if (dst.dtype() == src.dtype()) {
    const Backend b = backend("assign_", {&dst, &src});
    G4_RUN(b, b.need(kt.copy)(p<S>(src), p<S>(dst), src.numel()));
  } else if (dst.dtype() == DType::f32) {  // src is bf16
    const Backend b = backend("assign_", {&src}, {&dst});
    G4_RUN(b, b.need(kt.to_f32)(p<S>(src), f32(dst), src.numel()));
  } else {
    const Backend b = backend("assign_", {&dst}, {&src});
    G4_RUN(b, b.need(kt.from_f32)(f32(src), p<S>(dst), src.numel()));
  }
}

void zero_(Tensor& x) {
  const Backend b = backend("zero_", {&x});
  G4_RUN(b, b.need(kt.zero)(p<S>(x), x.numel()));
}

void clamp_(Tensor& x, float lo, float hi) {
  const Backend b = backend("clamp_", {&x});
  G4_RUN(b, b.need(kt.clamp_inplace)(p<S>(x), lo, hi, x.numel()));
}

void clamp_backward_(Tensor& dy, const Tensor& x, float lo, float hi) {
  check(dy.numel() == x.numel(), "clamp_backward_: ", shape_str(dy.shape()), " vs ", shape_str(x.shape()));
  const Backend b = backend("clamp_backward_", {&dy, &x});
  G4_RUN(b, b.need(kt.clamp_backward)(p<S>(dy), p<S>(x), lo, hi, x.numel()));
}

Tensor scaled(const Tensor& x, float factor) {
  const Backend b = backend("scaled", {&x});
  Tensor y = output(x.shape(), b);
  G4_RUN(b, b.need(kt.scale_copy)(p<S>(x), factor, p<S>(y), x.numel()));
  return y;
}

Tensor embedding(const Tensor& table, std::span<const std::int64_t> ids, float scale,
                 const char* table_name) {
  const Backend b = backend("embedding", {&table});
  const std::int64_t rows = table.dim(0), width = table.dim(1);
  for (const std::int64_t id : ids)
    if (!(id >= 0 && id < rows))
      fail("token id ", id, " is out of range for ", table_name, " (", rows, " rows)");
  const auto count = static_cast<std::int64_t>(ids.size());
  Tensor out = output({count, width}, b);
  G4_RUN(b, b.need(kt.gather_rows)(p<S>(table), ids.data(), count, width, scale, p<S>(out)));
  return out;
}

void embedding_backward(const Tensor& dout, std::span<const std::int64_t> ids, float scale, Tensor& dtable) {
  const Backend b = backend("embedding_backward", {&dout}, {&dtable});
  const auto count = static_cast<std::int64_t>(ids.size());
  const std::int64_t width = dtable.dim(1);
  if (!(dout.numel() == count * width))
    fail("op embedding_backward: dout ", shape_str(dout.shape()), " for ", count, " ids of width ", width);
  G4_RUN(b, b.need(kt.scatter_add_rows)(p<S>(dout), ids.data(), count, width, scale, f32(dtable)));
}

Tensor linear(const Tensor& x, const Tensor& weight) {
  const Backend b = backend("linear", {&x, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1);
  if (!(x.dim(-1) == K))
    fail("op linear: input ", shape_str(x.shape()), " against weight ", shape_str(weight.shape()));
  Tensor y = output(with_last(x.shape(), N), b);
  G4_RUN(b, b.need(kt.linear_forward)(p<S>(x), p<S>(weight), p<S>(y), rows_of(x, K), N, K, false));
  return y;
}

Tensor linear_to_f32(const Tensor& x, const Tensor& weight) {
  const Backend b = backend("linear_to_f32", {&x, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1);
  if (!(x.dim(-1) == K))
    fail("op linear_to_f32: input ", shape_str(x.shape()), " against weight ", shape_str(weight.shape()));
  Tensor y = output(with_last(x.shape(), N), b, DType::f32);
  G4_RUN(b, b.need(kt.linear_forward_f32)(p<S>(x), p<S>(weight), f32(y), rows_of(x, K), N, K));
  return y;
}

void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dweight) {
  const Backend b = backend("linear_backward_weight", {&dy, &x}, {&dweight});
  const std::int64_t N = dweight.dim(0), K = dweight.dim(1), M = rows_of(x, K);
  if (!(rows_of(dy, N) == M))
    fail("op linear_backward_weight: dy ", shape_str(dy.shape()), " and x ", shape_str(x.shape()),
         " against weight ", shape_str(dweight.shape()));
  G4_RUN(b, b.need(kt.matmul_tn)(p<S>(dy), p<S>(x), f32(dweight), N, K, M, /*accumulate=*/true));
}

Tensor linear_backward_input(const Tensor& dy, const Tensor& weight) {
  const Backend b = backend("linear_backward_input", {&dy, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1);
  Tensor dx = output(with_last(dy.shape(), K), b);
  G4_RUN(b, b.need(kt.matmul_nn)(p<S>(dy), p<S>(weight), p<S>(dx), rows_of(dy, N), K, N, false));
  return dx;
}

void linear_backward_input_add_(Tensor& dx, const Tensor& dy, const Tensor& weight) {
  const Backend b = backend("linear_backward_input_add_", {&dx, &dy, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1), M = rows_of(dy, N);
  if (!(dx.numel() == M * K))
    fail("op linear_backward_input_add_: dx ", shape_str(dx.shape()), " for dy ", shape_str(dy.shape()),
         " and weight ", shape_str(weight.shape()));
  G4_RUN(b, b.need(kt.matmul_nn)(p<S>(dy), p<S>(weight), p<S>(dx), M, K, N, /*accumulate=*/true));
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  const Backend b = backend("rms_norm", {&x, &weight});
  const std::int64_t dim = x.dim(-1);
  if (!(weight.empty() || weight.numel() == dim))
    fail("op rms_norm: weight ", shape_str(weight.shape()), " for input ", shape_str(x.shape()));
  Tensor y = output(x.shape(), b);
  G4_RUN(b, b.need(kt.rms_norm_forward)(p<S>(x), p<S>(weight), p<S>(y), rows_of(x, dim), dim, eps));
  return y;
}

Tensor rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor& dweight,
                         float eps) {
  const Backend b = backend("rms_norm_backward", {&x, &weight, &dy}, {&dweight});
  require_same_numel("rms_norm_backward", x, dy);
  const std::int64_t dim = x.dim(-1);
  Tensor dx = output(x.shape(), b);
  G4_RUN(b, b.need(kt.rms_norm_backward)(p<S>(x), p<S>(weight), p<S>(dy), p<S>(dx), f32(dweight),
                                         rows_of(x, dim), dim, eps));
  return dx;
}

void rope_(Tensor& x, const RopeTable& table) {
  const Backend b = backend("rope_", {&x});
  if (!(x.rank() == 3 && x.dim(2) == table.head_dim))
    fail("op rope_: input ", shape_str(x.shape()), " for head_dim ", table.head_dim);
  G4_RUN(b, b.need(kt.rope_apply)(p<S>(x), table, x.dim(0), static_cast<int>(x.dim(1))));
}

void rope_backward_(Tensor& dx, const RopeTable& table) {
  const Backend b = backend("rope_backward_", {&dx});
  if (!(dx.rank() == 3 && dx.dim(2) == table.head_dim))
    fail("op rope_backward_: input ", shape_str(dx.shape()), " for head_dim ", table.head_dim);
  G4_RUN(b, b.need(kt.rope_backward)(p<S>(dx), table, dx.dim(0), static_cast<int>(dx.dim(1))));
}

namespace {

struct AttentionShape {
  int num_q_heads, num_kv_heads, head_dim;
};

AttentionShape attention_shape(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                               std::span<const AttentionVisibility> rows) {
  if (!(q.rank() == 3 && k.rank() == 3 && v.shape() == k.shape() && q.dim(2) == k.dim(2)))
    fail("op ", op, ": q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()));
  std::int64_t queries = 0, keys = 0;
  for (const AttentionVisibility& r : rows) {
    queries += r.queries;
    keys += r.keys;
  }
  if (!(queries == q.dim(0) && keys == k.dim(0)))
    fail("op ", op, ": rows describe ", queries, " queries and ", keys, " keys, tensors hold ", q.dim(0),
         " and ", k.dim(0));
  return {static_cast<int>(q.dim(1)), static_cast<int>(k.dim(1)), static_cast<int>(q.dim(2))};
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 std::span<const AttentionVisibility> rows) {
  const Backend b = backend("attention", {&q, &k, &v});
  const AttentionShape s = attention_shape("attention", q, k, v, rows);
  const std::int64_t q_width = std::int64_t{s.num_q_heads} * s.head_dim;
  const std::int64_t kv_width = std::int64_t{s.num_kv_heads} * s.head_dim;
  Tensor out = output(q.shape(), b);
  G4_RUN(b, {
    std::int64_t q_at = 0, k_at = 0;
    for (const AttentionVisibility& r : rows) {
      b.need(kt.attention_forward)(p<S>(q) + q_at * q_width, p<S>(k) + k_at * kv_width,
                                   p<S>(v) + k_at * kv_width, r, p<S>(out) + q_at * q_width, s.num_q_heads,
                                   s.num_kv_heads, s.head_dim);
      q_at += r.queries;
      k_at += r.keys;
    }
  });
  return out;
}

Tensor attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                          std::span<const AttentionVisibility> rows, const Tensor& dout, Tensor& dk,
                          Tensor& dv) {
  const Backend b = backend("attention_backward", {&q, &k, &v, &dout, &dk, &dv});
  const AttentionShape s = attention_shape("attention_backward", q, k, v, rows);
  if (!(dout.shape() == q.shape() && dk.shape() == k.shape() && dv.shape() == v.shape()))
    fail("op attention_backward: gradient shapes differ from q, k, v");
  const std::int64_t q_width = std::int64_t{s.num_q_heads} * s.head_dim;
  const std::int64_t kv_width = std::int64_t{s.num_kv_heads} * s.head_dim;
  Tensor dq = output(q.shape(), b);
  G4_RUN(b, {
    std::int64_t q_at = 0, k_at = 0;
    for (const AttentionVisibility& r : rows) {
      b.need(kt.attention_backward)(p<S>(q) + q_at * q_width, p<S>(k) + k_at * kv_width,
                                    p<S>(v) + k_at * kv_width, r, p<S>(dout) + q_at * q_width,
                                    p<S>(dq) + q_at * q_width, p<S>(dk) + k_at * kv_width,
                                    p<S>(dv) + k_at * kv_width, s.num_q_heads, s.num_kv_heads, s.head_dim);
      q_at += r.queries;
      k_at += r.keys;
    }
  });
  return dq;
}

Tensor geglu(const Tensor& gate, const Tensor& up) {
  const Backend b = backend("geglu", {&gate, &up});
  require_same_numel("geglu", gate, up);
  Tensor out = output(gate.shape(), b);
  G4_RUN(b, b.need(kt.geglu_forward)(p<S>(gate), p<S>(up), p<S>(out), gate.numel()));
  return out;
}

GegluGrads geglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout) {
  const Backend b = backend("geglu_backward", {&gate, &up, &dout});
  require_same_numel("geglu_backward", gate, up);
  require_same_numel("geglu_backward", gate, dout);
  GegluGrads g{output(gate.shape(), b), output(up.shape(), b)};
  G4_RUN(b,
         b.need(kt.geglu_backward)(p<S>(gate), p<S>(up), p<S>(dout), p<S>(g.gate), p<S>(g.up), gate.numel()));
  return g;
}

Tensor middle_slice(const Tensor& x, std::int64_t index) {
  const Backend b = backend("middle_slice", {&x});
  if (!(x.rank() == 3 && index >= 0 && index < x.dim(1)))
    fail("op middle_slice: index ", index, " of ", shape_str(x.shape()));
  Tensor out = output({x.dim(0), x.dim(2)}, b);
  G4_RUN(b, b.need(kt.middle_slice_copy)(p<S>(x), x.dim(0), x.dim(1), x.dim(2), index, p<S>(out)));
  return out;
}

void middle_slice_add_(Tensor& x, std::int64_t index, const Tensor& dslice) {
  const Backend b = backend("middle_slice_add_", {&x, &dslice});
  if (!(x.rank() == 3 && index >= 0 && index < x.dim(1) && dslice.numel() == x.dim(0) * x.dim(2)))
    fail("op middle_slice_add_: ", shape_str(dslice.shape()), " into index ", index, " of ",
         shape_str(x.shape()));
  G4_RUN(b, b.need(kt.middle_slice_add)(p<S>(x), x.dim(0), x.dim(1), x.dim(2), index, p<S>(dslice)));
}

// The f32-only ops: every tensor in the f32 list, so the f32 table runs them.
void softcap_(Tensor& logits, float cap) {
  const Backend b = backend("softcap_", {}, {&logits});
  G4_RUN(b, b.need(kt.softcap_forward)(f32(logits), logits.numel(), cap));
}

void softcap_backward_(const Tensor& capped, Tensor& grad, float cap) {
  const Backend b = backend("softcap_backward_", {}, {&capped, &grad});
  require_same_numel("softcap_backward_", capped, grad);
  G4_RUN(b, b.need(kt.softcap_backward)(f32(capped), f32(grad), grad.numel(), cap));
}

LossResult causal_lm_loss(const Tensor& logits, std::span<const std::int64_t> labels) {
  const Backend b = backend("causal_lm_loss", {}, {&logits});
  if (!(logits.rank() == 3 && static_cast<std::int64_t>(labels.size()) == logits.dim(0) * logits.dim(1)))
    fail("op causal_lm_loss: ", labels.size(), " labels for logits ", shape_str(logits.shape()));
  return G4_RUN(b, return b.need(kt.causal_lm_loss)(f32(logits), labels.data(), logits.dim(0), logits.dim(1),
                                                    logits.dim(2)));
}

Tensor causal_lm_loss_backward(const Tensor& logits, std::span<const std::int64_t> labels,
                               double normaliser) {
  const Backend b = backend("causal_lm_loss_backward", {}, {&logits});
  if (!(logits.rank() == 3 && static_cast<std::int64_t>(labels.size()) == logits.dim(0) * logits.dim(1)))
    fail("op causal_lm_loss_backward: ", labels.size(), " labels for logits ", shape_str(logits.shape()));
  Tensor dlogits = output(logits.shape(), b);
  G4_RUN(b, b.need(kt.causal_lm_loss_backward)(f32(logits), labels.data(), f32(dlogits), logits.dim(0),
                                               logits.dim(1), logits.dim(2), normaliser));
  return dlogits;
}

LossResult token_loss(const Tensor& logits, std::span<const std::int64_t> targets) {
  const Backend b = backend("token_loss", {}, {&logits});
  if (!(logits.rank() == 2 && static_cast<std::int64_t>(targets.size()) == logits.dim(0)))
    fail("op token_loss: ", targets.size(), " targets for logits ", shape_str(logits.shape()));
  return G4_RUN(b, return b.need(kt.token_loss)(f32(logits), targets.data(), logits.dim(0), logits.dim(1)));
}

Tensor token_loss_backward(const Tensor& logits, std::span<const std::int64_t> targets, double normaliser) {
  const Backend b = backend("token_loss_backward", {}, {&logits});
  if (!(logits.rank() == 2 && static_cast<std::int64_t>(targets.size()) == logits.dim(0)))
    fail("op token_loss_backward: ", targets.size(), " targets for logits ", shape_str(logits.shape()));
  Tensor dlogits = output(logits.shape(), b);
  G4_RUN(b, b.need(kt.token_loss_backward)(f32(logits), targets.data(), f32(dlogits), logits.dim(0),
                                           logits.dim(1), normaliser));
  return dlogits;
}

void adamw_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
            const AdamWStepConstants& k, std::int64_t first) {
  const Backend b = backend("adamw_", {}, {&param, &grad, &exp_avg, &exp_avg_sq});
  require_same_numel("adamw_", param, grad);
  require_same_numel("adamw_", exp_avg, exp_avg_sq);
  const std::int64_t n = exp_avg.numel();
  if (first < 0 || first > param.numel() - n)
    fail("op adamw_: elements [", first, ", ", first + n, ") outside a parameter of ", param.numel());
  G4_RUN(b,
         b.need(kt.adamw_update)(f32(param) + first, f32(grad) + first, f32(exp_avg), f32(exp_avg_sq), n, k));
}

double sum_of_squares(const Tensor& x, std::int64_t first, std::int64_t count) {
  const Backend b = backend("sum_of_squares", {}, {&x});
  if (count < 0) count = x.numel() - first;
  if (first < 0 || count < 0 || first > x.numel() - count)
    fail("op sum_of_squares: elements [", first, ", ", first + count, ") outside a tensor of ", x.numel());
  return G4_RUN(b, return b.need(kt.sum_of_squares)(f32(x) + first, count));
}

#undef G4_RUN

}  // namespace g4::ops
