// run_directory.h: the files of a training run in output.dir (metrics.jsonl, loss.png, checkpoint-<step>/)
// and the rules that keep a user's earlier runs safe.
//
// Invariants:
// - A new run refuses a directory that already holds a run's files unless output.overwrite is set; then its
//   metrics.jsonl and loss.png are replaced and checkpoints of the same step are replaced as they are
//   written; nothing else there is touched.
// - A resumed run (--resume) continues metrics.jsonl: lines of steps after the resumed step (what the
//   abandoned continuation logged) are dropped once, so no step appears twice.
// - save_total_limit rotates only checkpoints this run wrote; checkpoints of earlier runs are never removed.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "io/json.h"
#include "train/loss_plot.h"

namespace g4 {

class RunDirectory {
 public:
  // Checks `dir` for a run (reads only, so every rank may check); `resumed_step` < 0 for a new run.
  RunDirectory(std::string dir, bool overwrite, std::int64_t resumed_step);
  // Creates the directory and starts or continues metrics.jsonl (one writer: rank 0, after every rank
  // checked).
  void prepare() const;

  const std::string& dir() const { return dir_; }
  std::string checkpoint_path(std::int64_t step) const;
  // Whether this run may write checkpoint-<step>: absent, written by this run, or permitted by the user.
  bool may_replace_checkpoint(std::int64_t step) const;
  // Records a checkpoint this run wrote; returns the paths of this run's checkpoints removed to keep at most
  // `limit` (0: keep all).
  std::vector<std::string> checkpoint_written(std::int64_t step, std::int64_t limit);

  void append_metrics(const Json& line) const;
  // Train loss, eval loss and learning rate from metrics.jsonl (this run's lines and, after a resume, the
  // earlier ones it continues).
  LossCurves curves() const;

 private:
  std::string dir_, metrics_path_;
  bool may_replace_ = false;
  std::int64_t resumed_step_ = -1;
  std::vector<std::int64_t> written_;  // checkpoints of this run, oldest first
};

}  // namespace g4
