// zero_optimizer.h: ZeRO stage 1 (recipe key parallel.zero: 1): AdamW whose moments are sharded over the
// data-parallel group instead of replicated.
//
// Every rank of a DP group holds the same parameters (the replicated ones and the same expert slice: the DP
// group of a rank is its EP-replica group), so each parameter tensor is cut into DP-size contiguous blocks
// (block r of n elements: the first n mod P blocks hold one more) and DP rank r owns block r of every tensor.
// Per step: reduce_gradients sums each gradient over the group into its owner's block only
// (reduce-scatter); clip_grad_norm and step work on the owned blocks (step keeps moments for them alone, 2 ×
// 4 bytes per owned element), then all-gathers the updated blocks so that every rank again holds the whole
// parameters. The element-wise update is AdamW's (ops::adamw_ on its slice), so with the same summed
// gradients the parameters equal plain data parallelism's bit for bit.
//
// Invariant: outside reduce_gradients..step, every rank of the DP group holds identical parameters; inside,
// only the owned block of each gradient is meaningful (the rest is this rank's unsummed local gradient).
// Every function is collective over the DP group (called by all its ranks, same parameters, same order).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "train/adamw.h"

namespace g4 {

class ZeroOptimizer {
 public:
  // `dp` must outlive the optimizer.
  ZeroOptimizer(Communicator& dp, AdamWConfig config) : dp_(&dp), config_(config) {}

  void reduce_gradients(const std::vector<ParamRef>& params);
  // Global gradient norm from the owned blocks (expert tensors' squares also summed over `ep` when given:
  // their slices differ between EP ranks), clipping the owned blocks like clip_grad_norm. Returns the norm.
  double clip_grad_norm(const std::vector<ParamRef>& params, double max_norm, Communicator* ep);
  void step(const std::vector<ParamRef>& params, double lr);

  // Full moments of every parameter (assembled over the DP group, on every rank) in an AdamW, for
  // checkpoints.
  AdamW gathered(const std::vector<ParamRef>& params) const;
  // Takes this rank's blocks of `full`'s moments (a resumed checkpoint's, sliced to this rank's experts) and
  // its step count, then empties full's state (its memory is what ZeRO-1 saves).
  void load(AdamW& full, const std::vector<ParamRef>& params);

  std::int64_t steps() const { return steps_; }
  // Elements of `params` this rank owns (it keeps 2 moments × 4 bytes for each), for the memory report.
  std::int64_t owned_elements(const std::vector<ParamRef>& params) const;

 private:
  struct Block {
    std::int64_t start, count;
  };
  Block block(std::int64_t n, int rank) const;
  std::vector<std::size_t> block_counts(std::int64_t n) const;

  Communicator* dp_;
  AdamWConfig config_;
  std::int64_t steps_ = 0;
  std::map<std::string, std::pair<Tensor, Tensor>> moments_;  // by name: [count] exp_avg, exp_avg_sq
  std::vector<float> scratch_;
};

}  // namespace g4
