#include "ops/ops.h"

#include <cstring>
#include <initializer_list>
#include <string>

#include "core/error.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rms_norm.h"

namespace g4::ops {

namespace {

// The device every tensor of one op call sits on; only the host has versions of these ops today.
void require_cpu(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->empty()) continue;
    if (t->device() != Device::cpu)
      fail("op ", op, " has no ", device_name(t->device()), " version yet (its tensors must be on the host)");
    if (t->dtype() != DType::f32) fail("op ", op, " takes f32 tensors, got ", dtype_name(t->dtype()));
  }
}

void require_same_numel(const char* op, const Tensor& a, const Tensor& b) {
  if (!(a.numel() == b.numel()))
    fail("op ", op, ": shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
}

// Rows of a [.., K] tensor viewed as a matrix.
std::int64_t rows_of(const Tensor& x, std::int64_t width) {
  return width == 0 ? 0 : x.numel() / width;
}

// An op's fresh output: f32, zero-filled, from this thread's activation allocator (core/allocator.h).
Tensor output(Shape shape) {
  return Tensor(DType::f32, std::move(shape), activation_allocator(Device::cpu));
}

Shape with_last(Shape shape, std::int64_t last) {
  shape.back() = last;
  return shape;
}

}  // namespace

void add_(Tensor& x, const Tensor& y) {
  require_cpu("add_", {&x, &y});
  require_same_numel("add_", x, y);
  add_inplace(x.f32(), y.f32(), x.numel());
}

void scale_(Tensor& x, float factor) {
  require_cpu("scale_", {&x});
  scale_inplace(x.f32(), factor, x.numel());
}

Tensor zeros(Shape shape, Device device) {
  if (device != Device::cpu) fail("op zeros has no ", device_name(device), " version yet");
  return output(std::move(shape));
}

Tensor copy(const Tensor& x) {
  require_cpu("copy", {&x});
  Tensor y = output(x.shape());
  if (x.numel() > 0) std::memcpy(y.data(), x.data(), x.nbytes());
  return y;
}

Tensor scaled(const Tensor& x, float factor) {
  require_cpu("scaled", {&x});
  Tensor y = output(x.shape());
  scale_copy(x.f32(), factor, y.f32(), x.numel());
  return y;
}

Tensor embedding(const Tensor& table, std::span<const std::int64_t> ids, float scale,
                 const char* table_name) {
  require_cpu("embedding", {&table});
  const std::int64_t rows = table.dim(0), width = table.dim(1);
  for (const std::int64_t id : ids)
    if (!(id >= 0 && id < rows))
      fail("token id ", id, " is out of range for ", table_name, " (", rows, " rows)");
  const auto count = static_cast<std::int64_t>(ids.size());
  Tensor out = output({count, width});
  gather_rows(table.f32(), ids.data(), count, width, scale, out.f32());
  return out;
}

void embedding_backward(const Tensor& dout, std::span<const std::int64_t> ids, float scale, Tensor& dtable) {
  require_cpu("embedding_backward", {&dout, &dtable});
  const auto count = static_cast<std::int64_t>(ids.size());
  const std::int64_t width = dtable.dim(1);
  if (!(dout.numel() == count * width))
    fail("op embedding_backward: dout ", shape_str(dout.shape()), " for ", count, " ids of width ", width);
  scatter_add_rows(dout.f32(), ids.data(), count, width, scale, dtable.f32());
}

Tensor linear(const Tensor& x, const Tensor& weight) {
  require_cpu("linear", {&x, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1);
  if (!(x.dim(-1) == K))
    fail("op linear: input ", shape_str(x.shape()), " against weight ", shape_str(weight.shape()));
  Tensor y = output(with_last(x.shape(), N));
  linear_forward(x.f32(), weight.f32(), y.f32(), rows_of(x, K), N, K);
  return y;
}

void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dweight) {
  require_cpu("linear_backward_weight", {&dy, &x, &dweight});
  const std::int64_t N = dweight.dim(0), K = dweight.dim(1), M = rows_of(x, K);
  if (!(rows_of(dy, N) == M))
    fail("op linear_backward_weight: dy ", shape_str(dy.shape()), " and x ", shape_str(x.shape()),
         " against weight ", shape_str(dweight.shape()));
  matmul_tn(dy.f32(), x.f32(), dweight.f32(), N, K, M, /*accumulate=*/true);
}

Tensor linear_backward_input(const Tensor& dy, const Tensor& weight) {
  require_cpu("linear_backward_input", {&dy, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1);
  Tensor dx = output(with_last(dy.shape(), K));
  matmul_nn(dy.f32(), weight.f32(), dx.f32(), rows_of(dy, N), K, N);
  return dx;
}

void linear_backward_input_add_(Tensor& dx, const Tensor& dy, const Tensor& weight) {
  require_cpu("linear_backward_input_add_", {&dx, &dy, &weight});
  const std::int64_t N = weight.dim(0), K = weight.dim(1), M = rows_of(dy, N);
  if (!(dx.numel() == M * K))
    fail("op linear_backward_input_add_: dx ", shape_str(dx.shape()), " for dy ", shape_str(dy.shape()),
         " and weight ", shape_str(weight.shape()));
  matmul_nn(dy.f32(), weight.f32(), dx.f32(), M, K, N, /*accumulate=*/true);
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  require_cpu("rms_norm", {&x, &weight});
  const std::int64_t dim = x.dim(-1);
  if (!(weight.empty() || weight.numel() == dim))
    fail("op rms_norm: weight ", shape_str(weight.shape()), " for input ", shape_str(x.shape()));
  Tensor y = output(x.shape());
  rms_norm_forward(x.f32(), weight.empty() ? nullptr : weight.f32(), y.f32(), rows_of(x, dim), dim, eps);
  return y;
}

Tensor rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor& dweight,
                         float eps) {
  require_cpu("rms_norm_backward", {&x, &weight, &dy, &dweight});
  require_same_numel("rms_norm_backward", x, dy);
  const std::int64_t dim = x.dim(-1);
  Tensor dx = output(x.shape());
  g4::rms_norm_backward(x.f32(), weight.empty() ? nullptr : weight.f32(), dy.f32(), dx.f32(),
                        dweight.empty() ? nullptr : dweight.f32(), rows_of(x, dim), dim, eps);
  return dx;
}

void rope_(Tensor& x, const RopeTable& table) {
  require_cpu("rope_", {&x});
  if (!(x.rank() == 3 && x.dim(2) == table.head_dim))
    fail("op rope_: input ", shape_str(x.shape()), " for head_dim ", table.head_dim);
  rope_apply(x.f32(), table, x.dim(0), static_cast<int>(x.dim(1)));
}

void rope_backward_(Tensor& dx, const RopeTable& table) {
  require_cpu("rope_backward_", {&dx});
  if (!(dx.rank() == 3 && dx.dim(2) == table.head_dim))
    fail("op rope_backward_: input ", shape_str(dx.shape()), " for head_dim ", table.head_dim);
  rope_backward(dx.f32(), table, dx.dim(0), static_cast<int>(dx.dim(1)));
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
  require_cpu("attention", {&q, &k, &v});
  const AttentionShape s = attention_shape("attention", q, k, v, rows);
  const std::int64_t q_width = std::int64_t{s.num_q_heads} * s.head_dim;
  const std::int64_t kv_width = std::int64_t{s.num_kv_heads} * s.head_dim;
  Tensor out = output(q.shape());
  std::int64_t q_at = 0, k_at = 0;
  for (const AttentionVisibility& r : rows) {
    attention_forward(q.f32() + q_at * q_width, k.f32() + k_at * kv_width, v.f32() + k_at * kv_width, r,
                      out.f32() + q_at * q_width, s.num_q_heads, s.num_kv_heads, s.head_dim);
    q_at += r.queries;
    k_at += r.keys;
  }
  return out;
}

Tensor attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                          std::span<const AttentionVisibility> rows, const Tensor& dout, Tensor& dk,
                          Tensor& dv) {
  require_cpu("attention_backward", {&q, &k, &v, &dout, &dk, &dv});
  const AttentionShape s = attention_shape("attention_backward", q, k, v, rows);
  if (!(dout.shape() == q.shape() && dk.shape() == k.shape() && dv.shape() == v.shape()))
    fail("op attention_backward: gradient shapes differ from q, k, v");
  const std::int64_t q_width = std::int64_t{s.num_q_heads} * s.head_dim;
  const std::int64_t kv_width = std::int64_t{s.num_kv_heads} * s.head_dim;
  Tensor dq = output(q.shape());
  std::int64_t q_at = 0, k_at = 0;
  for (const AttentionVisibility& r : rows) {
    g4::attention_backward(q.f32() + q_at * q_width, k.f32() + k_at * kv_width, v.f32() + k_at * kv_width, r,
                           dout.f32() + q_at * q_width, dq.f32() + q_at * q_width, dk.f32() + k_at * kv_width,
                           dv.f32() + k_at * kv_width, s.num_q_heads, s.num_kv_heads, s.head_dim);
    q_at += r.queries;
    k_at += r.keys;
  }
  return dq;
}

Tensor geglu(const Tensor& gate, const Tensor& up) {
  require_cpu("geglu", {&gate, &up});
  require_same_numel("geglu", gate, up);
  Tensor out = output(gate.shape());
  geglu_forward(gate.f32(), up.f32(), out.f32(), gate.numel());
  return out;
}

GegluGrads geglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout) {
  require_cpu("geglu_backward", {&gate, &up, &dout});
  require_same_numel("geglu_backward", gate, up);
  require_same_numel("geglu_backward", gate, dout);
  GegluGrads g{output(gate.shape()), output(up.shape())};
  g4::geglu_backward(gate.f32(), up.f32(), dout.f32(), g.gate.f32(), g.up.f32(), gate.numel());
  return g;
}

Tensor middle_slice(const Tensor& x, std::int64_t index) {
  require_cpu("middle_slice", {&x});
  if (!(x.rank() == 3 && index >= 0 && index < x.dim(1)))
    fail("op middle_slice: index ", index, " of ", shape_str(x.shape()));
  Tensor out = output({x.dim(0), x.dim(2)});
  middle_slice_copy(x.f32(), x.dim(0), x.dim(1), x.dim(2), index, out.f32());
  return out;
}

void middle_slice_add_(Tensor& x, std::int64_t index, const Tensor& dslice) {
  require_cpu("middle_slice_add_", {&x, &dslice});
  if (!(x.rank() == 3 && index >= 0 && index < x.dim(1) && dslice.numel() == x.dim(0) * x.dim(2)))
    fail("op middle_slice_add_: ", shape_str(dslice.shape()), " into index ", index, " of ",
         shape_str(x.shape()));
  middle_slice_add(x.f32(), x.dim(0), x.dim(1), x.dim(2), index, dslice.f32());
}

void softcap_(Tensor& logits, float cap) {
  require_cpu("softcap_", {&logits});
  softcap_forward(logits.f32(), logits.numel(), cap);
}

void softcap_backward_(const Tensor& capped, Tensor& grad, float cap) {
  require_cpu("softcap_backward_", {&capped, &grad});
  require_same_numel("softcap_backward_", capped, grad);
  softcap_backward(capped.f32(), grad.f32(), grad.numel(), cap);
}

LossResult causal_lm_loss(const Tensor& logits, std::span<const std::int64_t> labels) {
  require_cpu("causal_lm_loss", {&logits});
  if (!(logits.rank() == 3 && static_cast<std::int64_t>(labels.size()) == logits.dim(0) * logits.dim(1)))
    fail("op causal_lm_loss: ", labels.size(), " labels for logits ", shape_str(logits.shape()));
  return g4::causal_lm_loss(logits.f32(), labels.data(), logits.dim(0), logits.dim(1), logits.dim(2));
}

Tensor causal_lm_loss_backward(const Tensor& logits, std::span<const std::int64_t> labels,
                               double normaliser) {
  require_cpu("causal_lm_loss_backward", {&logits});
  if (!(logits.rank() == 3 && static_cast<std::int64_t>(labels.size()) == logits.dim(0) * logits.dim(1)))
    fail("op causal_lm_loss_backward: ", labels.size(), " labels for logits ", shape_str(logits.shape()));
  Tensor dlogits = output(logits.shape());
  g4::causal_lm_loss_backward(logits.f32(), labels.data(), dlogits.f32(), logits.dim(0), logits.dim(1),
                              logits.dim(2), normaliser);
  return dlogits;
}

void adamw_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
            const AdamWStepConstants& k, std::int64_t first) {
  require_cpu("adamw_", {&param, &grad, &exp_avg, &exp_avg_sq});
  require_same_numel("adamw_", param, grad);
  require_same_numel("adamw_", exp_avg, exp_avg_sq);
  const std::int64_t n = exp_avg.numel();
  if (first < 0 || first > param.numel() - n)
    fail("op adamw_: elements [", first, ", ", first + n, ") outside a parameter of ", param.numel());
  adamw_update(param.f32() + first, grad.f32() + first, exp_avg.f32(), exp_avg_sq.f32(), n, k);
}

double sum_of_squares(const Tensor& x, std::int64_t first, std::int64_t count) {
  require_cpu("sum_of_squares", {&x});
  if (count < 0) count = x.numel() - first;
  if (first < 0 || count < 0 || first > x.numel() - count)
    fail("op sum_of_squares: elements [", first, ", ", first + count, ") outside a tensor of ", x.numel());
  return g4::sum_of_squares(x.f32() + first, count);
}

}  // namespace g4::ops
