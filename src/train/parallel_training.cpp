#include "train/parallel_training.h"

#include <cmath>

#include "core/error.h"
#include "model/batch_rows.h"

namespace g4 {

bool is_expert_parameter(const std::string& name) {
  return name.find(".moe.experts.") != std::string::npos;
}

namespace {

bool is_expert(const std::string& name) {
  return is_expert_parameter(name);
}

std::int64_t num_experts(const ModelConfig& config) {
  return config.text.enable_moe_block ? config.text.num_experts : 0;
}

}  // namespace

TrainParallel make_train_parallel(const ModelConfig& config, int ep, const std::string& dispatcher) {
  TrainParallel p;
  p.world = &world_communicator();
  p.setup = make_parallel_setup(*p.world, num_experts(config), ep, dispatcher_from_name(dispatcher));
  return p;
}

void shard_model(const TrainParallel& par, Gemma4Model& model) {
  model.dispatcher = par.setup.dispatcher.get();
  if (par.setup.experts.count == 0) return;
  for (const LayerSpec& s : model.config.text.layers) {
    if (!s.moe) continue;
    MoeWeights& m = model.weights.layers[s.index].moe;
    if (m.gate_and_up.dim(0) == par.setup.experts.count) continue;  // loaded with this rank's range already
    m.gate_and_up = slice_experts(m.gate_and_up, par.setup.experts);
    m.down = slice_experts(m.down, par.setup.experts);
  }
}

Batch local_rows(const TrainParallel& par, const Batch& micro) {
  const Communicator& dp = *par.setup.groups.dp;
  if (dp.size() == 1) return micro;
  check(micro.batch_size >= dp.size(), "train.batch_size ", micro.batch_size, " is smaller than the ",
        dp.size(), " data-parallel replicas (ranks / parallel.ep)");
  return batch_rows(micro, row_block(micro.batch_size, dp.size(), dp.rank()));
}

void sum_gradients(const TrainParallel& par, const std::vector<Tensor*>& grads) {
  Communicator& dp = *par.setup.groups.dp;
  if (dp.size() == 1) return;
  for (Tensor* g : grads) dp.all_reduce_sum(g->f32(), static_cast<std::size_t>(g->numel()));
}

double sum_over_replicas(const TrainParallel& par, double value) {
  par.setup.groups.dp->all_reduce_sum(&value, 1);
  return value;
}

bool any_rank(const TrainParallel& par, bool flag) {
  std::int64_t n = flag ? 1 : 0;
  par.world->all_reduce_sum(&n, 1);
  return n > 0;
}

double clip_grad_norm_parallel(const TrainParallel& par, const std::vector<ParamRef>& params,
                               double max_norm) {
  std::vector<Tensor*> grads;
  for (const ParamRef& p : params) grads.push_back(const_cast<Tensor*>(p.grad));
  if (par.setup.groups.ep_size == 1) return clip_grad_norm(grads, max_norm);
  // Replicated gradients are equal on every rank of the EP group; expert slices are disjoint.
  double replicated = 0, experts = 0;
  for (const ParamRef& p : params) {
    double& sum = is_expert(p.name) ? experts : replicated;
    const float* g = p.grad->f32();
    for (std::int64_t i = 0; i < p.grad->numel(); ++i) sum += static_cast<double>(g[i]) * g[i];
  }
  par.setup.groups.ep->all_reduce_sum(&experts, 1);
  const double norm = std::sqrt(replicated + experts);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (Tensor* g : grads)
      for (std::int64_t i = 0; i < g->numel(); ++i) g->f32()[i] *= scale;
  }
  return norm;
}

void with_gathered(const TrainParallel& par, Gemma4Model& model, AdamW& optimizer,
                   const std::function<void(Gemma4Model&, AdamW&)>& fn) {
  if (par.setup.groups.ep_size == 1) {
    if (par.root()) fn(model, optimizer);
    return;
  }
  Communicator& ep = *par.setup.groups.ep;
  const std::int64_t E = num_experts(model.config);
  Gemma4Model full = model;   // shares every tensor but the experts, replaced below
  full.dispatcher = nullptr;  // every expert is here now
  for (const LayerSpec& s : full.config.text.layers) {
    if (!s.moe) continue;
    MoeWeights& m = full.weights.layers[s.index].moe;
    m.gate_and_up = all_gather_experts(ep, m.gate_and_up, E);
    m.down = all_gather_experts(ep, m.down, E);
  }
  AdamW gathered(optimizer.config());
  gathered.set_steps(optimizer.steps());
  for (auto& [name, moments] : optimizer.state()) {  // same names, same order on every rank
    if (!is_expert(name)) {
      gathered.state()[name] = moments;
      continue;
    }
    gathered.state()[name] = {all_gather_experts(ep, moments.first, E),
                              all_gather_experts(ep, moments.second, E)};
  }
  if (par.root()) fn(full, gathered);
}

void shard_optimizer(const TrainParallel& par, AdamW& optimizer) {
  if (par.setup.experts.count == 0) return;
  for (auto& [name, moments] : optimizer.state()) {
    if (!is_expert(name)) continue;
    moments.first = slice_experts(moments.first, par.setup.experts);
    moments.second = slice_experts(moments.second, par.setup.experts);
  }
}

Shape full_parameter_shape(const TrainParallel& par, const ModelConfig& config, const std::string& name,
                           const Shape& local) {
  Shape full = local;
  if (par.setup.experts.count > 0 && is_expert(name) && !full.empty()) full[0] = num_experts(config);
  return full;
}

Tensor local_part(const TrainParallel& par, const std::string& name, const Tensor& full) {
  if (par.setup.experts.count == 0 || !is_expert(name)) return full;
  return slice_experts(full, par.setup.experts);
}

}  // namespace g4
