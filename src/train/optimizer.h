// optimizer.h: what the training loop asks of its optimizer, whatever holds the state: AdamW with its moments
// replicated on every data-parallel rank (parallel.zero = 0), or sharded over the replicas (ZeRO-1,
// train/zero_optimizer.h). The loop calls these in order each step; every rank calls every function.
//
// Invariant: both implementations give every rank the same parameters after step(), bit for bit equal to the
// one-process AdamW update of the summed gradients (the ZeRO-1 test compares them).
#pragma once

#include <memory>
#include <vector>

#include "train/adamw.h"
#include "train/parallel_training.h"

namespace g4 {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Sums the trainable gradients over the data-parallel replicas, as far as this rank's update needs them.
  virtual void reduce_gradients(const std::vector<ParamRef>& params) = 0;
  // The global gradient norm before clipping (over every rank's slice); scales the gradients down to
  // `max_norm` when above it (0: no clipping).
  virtual double clip_grad_norm(const std::vector<ParamRef>& params, double max_norm) = 0;
  virtual void step(const std::vector<ParamRef>& params, double lr) = 0;
  // The full moments of this rank's parameters (gathered over the replicas when sharded), for a checkpoint.
  virtual AdamW moments(const std::vector<ParamRef>& params) = 0;
};

// `resumed`: AdamW with the moments and step count of a checkpoint (or fresh); its state is handed over.
std::unique_ptr<Optimizer> make_optimizer(const TrainParallel& par, std::int64_t zero_stage, AdamW resumed,
                                          const std::vector<ParamRef>& params);

}  // namespace g4
