// lr_schedule.h: learning rate at a step (1-based): linear warm-up from lr/warmup to lr over `warmup` steps,
// then constant, or cosine / linear decay to lr·min_ratio at the last step.
#pragma once

#include <cstdint>
#include <string>

namespace g4 {

double learning_rate(const std::string& schedule, double lr, std::int64_t step, std::int64_t total_steps,
                     std::int64_t warmup, double min_ratio);

}  // namespace g4
