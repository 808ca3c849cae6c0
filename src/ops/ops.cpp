#include "ops/ops.h"

#include <initializer_list>
#include <optional>
#include <string>

#include "core/error.h"
#include "ops/kernels.h"

namespace g4::ops {

namespace {

// The backend of one op call: every tensor (empty ones aside) on one device, f32; its kernel table.
struct Backend {
  const char* op;
  Device device;
  const Kernels& k;
  // The kernel `entry` of this backend, or the error that the op has no version on this device yet.
  template <class F>
  F need(F entry) const {
    if (!entry) fail("op ", op, " has no ", device_name(device), " version yet");
    return entry;
  }
};

Backend backend(const char* op, std::initializer_list<const Tensor*> tensors) {
  std::optional<Device> device;
  for (const Tensor* t : tensors) {
    if (t->empty()) continue;
    if (device && *device != t->device())
      fail("op ", op, " got tensors on ", device_name(*device), " and on ", device_name(t->device()));
    device = t->device();
    if (t->dtype() != DType::f32) fail("op ", op, " takes f32 tensors, got ", dtype_name(t->dtype()));
  }
  const Device d = device.value_or(Device::cpu);
  return {op, d, d == Device::cpu ? cpu_kernels() : cuda_kernels()};
}

// The f32 buffer of a tensor on any device (nullptr when empty).
float* f32(Tensor& t) {
  return t.empty() ? nullptr : static_cast<float*>(t.data());
}
const float* f32(const Tensor& t) {
  return t.empty() ? nullptr : static_cast<const float*>(t.data());
}

void require_same_numel(const char* op, const Tensor& a, const Tensor& b) {
  if (!(a.numel() == b.numel()))
    fail("op ", op, ": shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
}

// Rows of a [.., K] tensor viewed as a matrix.
std::int64_t rows_of(const Tensor& x, std::int64_t width) {
  return width == 0 ? 0 : x.numel() / width;
}

// An op's fresh output: f32, zero-filled, on the backend's device, from this thread's activation allocator
// for it (core/allocator.h).
Tensor output(Shape shape, const Backend& b) {
  return Tensor(DType::f32, std::move(shape), activation_allocator(b.device));
}

Shape with_last(Shape shape, std::int64_t last) {
  shape.back() = last;
  return shape;
}

}  // namespace

void add_(Tensor& x, const Tensor& y) {
  const Backend b = backend("add_", {&x, &y});
  require_same_numel("add_", x, y);
  b.need(b.k.add_inplace)(f32(x), f32(y), x.numel());
}

void scale_(Tensor& x, float factor) {
  const Backend b = backend("scale_", {&x});
  b.need(b.k.scale_inplace)(f32(x), factor, x.numel());
}

Tensor zeros(Shape shape, Device device) {
  return Tensor(DType::f32, std::move(shape), activation_allocator(device));  // allocators zero-fill
}

Tensor copy(const Tensor& x) {
  const Backend b = backend("copy", {&x});
  Tensor y = output(x.shape(), b);
  b.need(b.k.copy)(f32(x), f32(y), x.numel());
  return y;
}

Tensor scaled(const Tensor& x, float factor) {
  const Backend b = backend("scaled", {&x});
  Tensor y = output(x.shape(), b);
  b.need(b.k.scale_copy)(f32(x), factor, f32(y), x.numel());
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
  b.need(b.k.gather_rows)(f32(table), ids.data(), count, width, scale, f32(out));
  return out;
}

void embedding_backward(const Tensor& dout, std::span<const std::int64_t> ids, float scale, Tensor& dtable) {
  const Backend b = backend("embedding_backward", {&dout, &dtable});
  const auto count = static_cast<std::int64_t>(ids.size());
  const std::int64_t width = dtable.dim(1);
  if (!(dout.numel() == count * width))
    fail("op embedding_backward: dout ", shape_str(dout.shape()), " for ", count, " ids of width ", width);
  b.need(b.k.scatter_add_rows)(f32(dout), ids.data(), count, width, scale, f32(dtable));
}

Tensor linear(const Tensor& x, const Tensor& weight) {
  const Backend b = backend("linear", {&x, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1);
  if (!(x.dim(-1) == K))
    fail("op linear: input ", shape_str(x.shape()), " against weight ", shape_str(weight.shape()));
  Tensor y = output(with_last(x.shape(), N), b);
  b.need(b.k.linear_forward)(f32(x), f32(weight), f32(y), rows_of(x, K), N, K, /*accumulate=*/false);
  return y;
}

void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dweight) {
  const Backend b = backend("linear_backward_weight", {&dy, &x, &dweight});
  const std::int64_t N = dweight.dim(0), K = dweight.dim(1), M = rows_of(x, K);
  if (!(rows_of(dy, N) == M))
    fail("op linear_backward_weight: dy ", shape_str(dy.shape()), " and x ", shape_str(x.shape()),
         " against weight ", shape_str(dweight.shape()));
  b.need(b.k.matmul_tn)(f32(dy), f32(x), f32(dweight), N, K, M, /*accumulate=*/true);
}

Tensor linear_backward_input(const Tensor& dy, const Tensor& weight) {
  const Backend b = backend("linear_backward_input", {&dy, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1);
  Tensor dx = output(with_last(dy.shape(), K), b);
  b.need(b.k.matmul_nn)(f32(dy), f32(weight), f32(dx), rows_of(dy, N), K, N, /*accumulate=*/false);
  return dx;
}

void linear_backward_input_add_(Tensor& dx, const Tensor& dy, const Tensor& weight) {
  const Backend b = backend("linear_backward_input_add_", {&dx, &dy, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1), M = rows_of(dy, N);
  if (!(dx.numel() == M * K))
    fail("op linear_backward_input_add_: dx ", shape_str(dx.shape()), " for dy ", shape_str(dy.shape()),
         " and weight ", shape_str(weight.shape()));
  b.need(b.k.matmul_nn)(f32(dy), f32(weight), f32(dx), M, K, N, /*accumulate=*/true);
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  const Backend b = backend("rms_norm", {&x, &weight});
  const std::int64_t dim = x.dim(-1);
  if (!(weight.empty() || weight.numel() == dim))
    fail("op rms_norm: weight ", shape_str(weight.shape()), " for input ", shape_str(x.shape()));
  Tensor y = output(x.shape(), b);
  b.need(b.k.rms_norm_forward)(f32(x), weight.empty() ? nullptr : f32(weight), f32(y), rows_of(x, dim), dim,
                               eps);
  return y;
}

Tensor rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor& dweight,
                         float eps) {
  const Backend b = backend("rms_norm_backward", {&x, &weight, &dy, &dweight});
  require_same_numel("rms_norm_backward", x, dy);
  const std::int64_t dim = x.dim(-1);
  Tensor dx = output(x.shape(), b);
  b.need(b.k.rms_norm_backward)(f32(x), weight.empty() ? nullptr : f32(weight), f32(dy), f32(dx),
                                dweight.empty() ? nullptr : f32(dweight), rows_of(x, dim), dim, eps);
  return dx;
}

void rope_(Tensor& x, const RopeTable& table) {
  const Backend b = backend("rope_", {&x});
  if (!(x.rank() == 3 && x.dim(2) == table.head_dim))
    fail("op rope_: input ", shape_str(x.shape()), " for head_dim ", table.head_dim);
  b.need(b.k.rope_apply)(f32(x), table, x.dim(0), static_cast<int>(x.dim(1)));
}

void rope_backward_(Tensor& dx, const RopeTable& table) {
  const Backend b = backend("rope_backward_", {&dx});
  if (!(dx.rank() == 3 && dx.dim(2) == table.head_dim))
    fail("op rope_backward_: input ", shape_str(dx.shape()), " for head_dim ", table.head_dim);
  b.need(b.k.rope_backward)(f32(dx), table, dx.dim(0), static_cast<int>(dx.dim(1)));
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
  std::int64_t q_at = 0, k_at = 0;
  for (const AttentionVisibility& r : rows) {
    b.need(b.k.attention_forward)(f32(q) + q_at * q_width, f32(k) + k_at * kv_width, f32(v) + k_at * kv_width,
                                  r, f32(out) + q_at * q_width, s.num_q_heads, s.num_kv_heads, s.head_dim);
    q_at += r.queries;
    k_at += r.keys;
  }
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
  std::int64_t q_at = 0, k_at = 0;
  for (const AttentionVisibility& r : rows) {
    b.need(b.k.attention_backward)(f32(q) + q_at * q_width, f32(k) + k_at * kv_width,
                                   f32(v) + k_at * kv_width, r, f32(dout) + q_at * q_width,
                                   f32(dq) + q_at * q_width, f32(dk) + k_at * kv_width,
                                   f32(dv) + k_at * kv_width, s.num_q_heads, s.num_kv_heads, s.head_dim);
    q_at += r.queries;
    k_at += r.keys;
  }
  return dq;
}

Tensor geglu(const Tensor& gate, const Tensor& up) {
  const Backend b = backend("geglu", {&gate, &up});
  require_same_numel("geglu", gate, up);
  Tensor out = output(gate.shape(), b);
  b.need(b.k.geglu_forward)(f32(gate), f32(up), f32(out), gate.numel());
  return out;
}

GegluGrads geglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout) {
  const Backend b = backend("geglu_backward", {&gate, &up, &dout});
  require_same_numel("geglu_backward", gate, up);
  require_same_numel("geglu_backward", gate, dout);
  GegluGrads g{output(gate.shape(), b), output(up.shape(), b)};
  b.need(b.k.geglu_backward)(f32(gate), f32(up), f32(dout), f32(g.gate), f32(g.up), gate.numel());
  return g;
}

Tensor middle_slice(const Tensor& x, std::int64_t index) {
  const Backend b = backend("middle_slice", {&x});
  if (!(x.rank() == 3 && index >= 0 && index < x.dim(1)))
    fail("op middle_slice: index ", index, " of ", shape_str(x.shape()));
  Tensor out = output({x.dim(0), x.dim(2)}, b);
  b.need(b.k.middle_slice_copy)(f32(x), x.dim(0), x.dim(1), x.dim(2), index, f32(out));
  return out;
}

void middle_slice_add_(Tensor& x, std::int64_t index, const Tensor& dslice) {
  const Backend b = backend("middle_slice_add_", {&x, &dslice});
  if (!(x.rank() == 3 && index >= 0 && index < x.dim(1) && dslice.numel() == x.dim(0) * x.dim(2)))
    fail("op middle_slice_add_: ", shape_str(dslice.shape()), " into index ", index, " of ",
         shape_str(x.shape()));
  b.need(b.k.middle_slice_add)(f32(x), x.dim(0), x.dim(1), x.dim(2), index, f32(dslice));
}

void softcap_(Tensor& logits, float cap) {
  const Backend b = backend("softcap_", {&logits});
  b.need(b.k.softcap_forward)(f32(logits), logits.numel(), cap);
}

void softcap_backward_(const Tensor& capped, Tensor& grad, float cap) {
  const Backend b = backend("softcap_backward_", {&capped, &grad});
  require_same_numel("softcap_backward_", capped, grad);
  b.need(b.k.softcap_backward)(f32(capped), f32(grad), grad.numel(), cap);
}

LossResult causal_lm_loss(const Tensor& logits, std::span<const std::int64_t> labels) {
  const Backend b = backend("causal_lm_loss", {&logits});
  if (!(logits.rank() == 3 && static_cast<std::int64_t>(labels.size()) == logits.dim(0) * logits.dim(1)))
    fail("op causal_lm_loss: ", labels.size(), " labels for logits ", shape_str(logits.shape()));
  return b.need(b.k.causal_lm_loss)(f32(logits), labels.data(), logits.dim(0), logits.dim(1), logits.dim(2));
}

Tensor causal_lm_loss_backward(const Tensor& logits, std::span<const std::int64_t> labels,
                               double normaliser) {
  const Backend b = backend("causal_lm_loss_backward", {&logits});
  if (!(logits.rank() == 3 && static_cast<std::int64_t>(labels.size()) == logits.dim(0) * logits.dim(1)))
    fail("op causal_lm_loss_backward: ", labels.size(), " labels for logits ", shape_str(logits.shape()));
  Tensor dlogits = output(logits.shape(), b);
  b.need(b.k.causal_lm_loss_backward)(f32(logits), labels.data(), f32(dlogits), logits.dim(0), logits.dim(1),
                                      logits.dim(2), normaliser);
  return dlogits;
}

void adamw_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
            const AdamWStepConstants& k, std::int64_t first) {
  const Backend b = backend("adamw_", {&param, &grad, &exp_avg, &exp_avg_sq});
  require_same_numel("adamw_", param, grad);
  require_same_numel("adamw_", exp_avg, exp_avg_sq);
  const std::int64_t n = exp_avg.numel();
  if (first < 0 || first > param.numel() - n)
    fail("op adamw_: elements [", first, ", ", first + n, ") outside a parameter of ", param.numel());
  b.need(b.k.adamw_update)(f32(param) + first, f32(grad) + first, f32(exp_avg), f32(exp_avg_sq), n, k);
}

double sum_of_squares(const Tensor& x, std::int64_t first, std::int64_t count) {
  const Backend b = backend("sum_of_squares", {&x});
  if (count < 0) count = x.numel() - first;
  if (first < 0 || count < 0 || first > x.numel() - count)
    fail("op sum_of_squares: elements [", first, ", ", first + count, ") outside a tensor of ", x.numel());
  return b.need(b.k.sum_of_squares)(f32(x) + first, count);
}

}  // namespace g4::ops
