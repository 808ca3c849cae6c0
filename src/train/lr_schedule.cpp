#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace g4 {

double learning_rate(const std::string& schedule, double lr, std::int64_t step, std::int64_t total,
                     std::int64_t warmup, double min_ratio) {
  if (warmup > 0 && step <= warmup) return lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (schedule == "constant" || total <= warmup) return lr;
  const double progress = std::clamp(
      static_cast<double>(step - warmup) / static_cast<double>(std::max<std::int64_t>(1, total - warmup)),
      0.0, 1.0);
  const double min_lr = lr * min_ratio;
  if (schedule == "linear") return lr + (min_lr - lr) * progress;
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));  // cosine
}

}  // namespace g4
