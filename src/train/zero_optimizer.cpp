#include "train/zero_optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "ops/ops.h"
#include "train/parallel_training.h"

namespace g4 {

ZeroOptimizer::Block ZeroOptimizer::block(std::int64_t n, int rank) const {
  const std::int64_t parts = dp_->size(), per = n / parts, rem = n % parts;
  if (rank < rem) return {rank * (per + 1), per + 1};
  return {rank * per + rem, per};
}

std::vector<std::size_t> ZeroOptimizer::block_counts(std::int64_t n) const {
  std::vector<std::size_t> counts(static_cast<std::size_t>(dp_->size()));
  for (int r = 0; r < dp_->size(); ++r) counts[r] = static_cast<std::size_t>(block(n, r).count);
  return counts;
}

void ZeroOptimizer::reduce_gradients(const std::vector<ParamRef>& params) {
  for (const ParamRef& p : params) {
    float* g = const_cast<Tensor*>(p.grad)->f32();
    const Block b = block(p.grad->numel(), dp_->rank());
    scratch_.resize(static_cast<std::size_t>(std::max<std::int64_t>(b.count, 1)));
    // MPI forbids aliasing the send and receive buffers: the summed block lands in scratch, then in place.
    dp_->reduce_scatter_sum(g, scratch_.data(), block_counts(p.grad->numel()), ReduceType::f32);
    std::copy(scratch_.begin(), scratch_.begin() + b.count, g + b.start);
  }
}

double ZeroOptimizer::clip_grad_norm(const std::vector<ParamRef>& params, double max_norm, Communicator* ep) {
  double sums[2] = {0, 0};  // replicated, experts
  for (const ParamRef& p : params) {
    const Block b = block(p.grad->numel(), dp_->rank());
    const double s = ops::sum_of_squares(*p.grad, b.start, b.count);
    sums[is_expert_parameter(p.name) ? 1 : 0] += s;
  }
  dp_->all_reduce_sum(sums, 2);
  if (ep && ep->size() > 1) ep->all_reduce_sum(&sums[1], 1);
  const double norm = std::sqrt(sums[0] + sums[1]);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (const ParamRef& p : params) {
      const Block b = block(p.grad->numel(), dp_->rank());
      float* g = const_cast<Tensor*>(p.grad)->f32() + b.start;
      for (std::int64_t i = 0; i < b.count; ++i) g[i] *= scale;
    }
  }
  return norm;
}

void ZeroOptimizer::step(const std::vector<ParamRef>& params, double lr) {
  ++steps_;
  const AdamWStepConstants k = adamw_step_constants(config_, steps_, lr);
  for (const ParamRef& p : params) {
    check(p.param && p.grad && p.param->shape() == p.grad->shape(), "ZeRO-1: parameter ", p.name,
          " and its gradient differ in shape");
    const std::int64_t n = p.param->numel();
    const Block b = block(n, dp_->rank());
    auto [it, created] = moments_.try_emplace(p.name);
    if (created) it->second = {Tensor(DType::f32, {b.count}), Tensor(DType::f32, {b.count})};
    ops::adamw_(*p.param, *p.grad, it->second.first, it->second.second, k, b.start);
    float* w = p.param->f32();
    // Every rank's updated block to every rank (the send block is copied out: MPI forbids aliasing).
    scratch_.assign(w + b.start, w + b.start + b.count);
    std::vector<std::size_t> bytes = block_counts(n);
    for (std::size_t& c : bytes) c *= sizeof(float);
    dp_->all_gather_v(scratch_.data(), static_cast<std::size_t>(b.count) * sizeof(float), w, bytes);
  }
}

AdamW ZeroOptimizer::gathered(const std::vector<ParamRef>& params) const {
  AdamW full(config_);
  full.set_steps(steps_);
  for (const ParamRef& p : params) {
    auto it = moments_.find(p.name);
    if (it == moments_.end()) continue;  // before the first step: no moments yet (on every rank alike)
    std::vector<std::size_t> bytes = block_counts(p.param->numel());
    for (std::size_t& c : bytes) c *= sizeof(float);
    std::pair<Tensor, Tensor>& out = full.state()[p.name];
    out = {Tensor(DType::f32, p.param->shape()), Tensor(DType::f32, p.param->shape())};
    dp_->all_gather_v(it->second.first.bytes(), it->second.first.nbytes(), out.first.bytes(), bytes);
    dp_->all_gather_v(it->second.second.bytes(), it->second.second.nbytes(), out.second.bytes(), bytes);
  }
  return full;
}

void ZeroOptimizer::load(AdamW& full, const std::vector<ParamRef>& params) {
  steps_ = full.steps();
  moments_.clear();
  for (const ParamRef& p : params) {
    auto it = full.state().find(p.name);
    if (it == full.state().end()) continue;  // AdamW creates missing moments as zeros on the first step
    check(it->second.first.numel() == p.param->numel() && it->second.second.numel() == p.param->numel(),
          "optimizer state of ", p.name, " has ", it->second.first.numel(), " elements, the parameter ",
          p.param->numel());
    const Block b = block(p.param->numel(), dp_->rank());
    std::pair<Tensor, Tensor>& mine = moments_[p.name];
    mine = {Tensor(DType::f32, {b.count}), Tensor(DType::f32, {b.count})};
    if (b.count == 0) continue;  // fewer elements than replicas: nothing owned (and no buffer to copy to)
    std::memcpy(mine.first.f32(), it->second.first.f32() + b.start, static_cast<std::size_t>(b.count) * 4);
    std::memcpy(mine.second.f32(), it->second.second.f32() + b.start, static_cast<std::size_t>(b.count) * 4);
  }
  full.state().clear();
}

std::int64_t ZeroOptimizer::owned_elements(const std::vector<ParamRef>& params) const {
  std::int64_t n = 0;
  for (const ParamRef& p : params) n += block(p.param->numel(), dp_->rank()).count;
  return n;
}

}  // namespace g4
