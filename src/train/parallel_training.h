// parallel_training.h: what `g4moe train` needs to run as N MPI ranks (parallel.ep / parallel.dispatcher):
// the process groups, each rank's expert slice, its rows of each micro-batch, the gradient reductions, the
// global gradient norm, and checkpoints gathered to the full HF layout on rank 0.
//
// Layout (moe/parallel_setup.h): EP groups of `ep` consecutive ranks hold contiguous expert blocks and share
// their rows; the N/ep data-parallel replicas take contiguous row blocks of every micro-batch. Gradients are
// summed over the DP group (replicated and expert tensors alike); the loss is normalised by the
// micro-batches' global label-token count, so the update equals the one-process update. AdamW runs on each
// rank's own slices; a checkpoint holds every expert and full optimizer moments, so it resumes (or scores) at
// any EP. With one rank every function is the identity / the one-process path.
#pragma once

#include <functional>
#include <vector>

#include "core/batch.h"
#include "model/gemma4_model.h"
#include "moe/parallel_setup.h"
#include "train/adamw.h"

namespace g4 {

struct TrainParallel {
  ParallelSetup setup;
  Communicator* world = nullptr;
  bool root() const { return world->rank() == 0; }
  bool active() const { return world->size() > 1; }
};

// Whether a parameter (native name) is a routed-expert tensor: sliced over the EP group, not replicated.
bool is_expert_parameter(const std::string& name);

// The world's groups for a recipe's parallel.ep / parallel.dispatcher (errors as make_parallel_setup).
TrainParallel make_train_parallel(const ModelConfig& config, int ep, const std::string& dispatcher);

// Keeps only this rank's experts in `model` (from a fully loaded or initialised model; a model loaded with
// this rank's expert range is kept as it is) and points the model at the EP group.
void shard_model(const TrainParallel& par, Gemma4Model& model);

// This DP replica's rows of a micro-batch (the batch itself with one replica). g4::Error when the micro-batch
// has fewer rows than replicas.
Batch local_rows(const TrainParallel& par, const Batch& micro);

// Sums over the DP group, in place.
void sum_gradients(const TrainParallel& par, const std::vector<Tensor*>& grads);
double sum_over_replicas(const TrainParallel& par, double value);
bool any_rank(const TrainParallel& par, bool flag);

// clip_grad_norm over the whole model: expert slices' squares are summed over the EP group.
double clip_grad_norm_parallel(const TrainParallel& par, const std::vector<ParamRef>& params,
                               double max_norm);

// Calls fn on rank 0 with the full model and optimizer (expert tensors and moments gathered over the EP
// group; every rank must call it). With one rank, fn gets `model` and `optimizer` themselves.
void with_gathered(const TrainParallel& par, Gemma4Model& model, AdamW& optimizer,
                   const std::function<void(Gemma4Model&, AdamW&)>& fn);

// After resuming from a full checkpoint: keeps this rank's slice of every expert moment.
void shard_optimizer(const TrainParallel& par, AdamW& optimizer);
// The full (all experts) shape of parameter `name` whose local tensor has shape `local`.
Shape full_parameter_shape(const TrainParallel& par, const ModelConfig& config, const std::string& name,
                           const Shape& local);
// This rank's part of the full tensor of parameter `name` (its experts' rows for an expert tensor).
Tensor local_part(const TrainParallel& par, const std::string& name, const Tensor& full);

}  // namespace g4
