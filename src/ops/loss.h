// loss.h: what a loss op returns and the label that counts for nothing; backend-neutral.
#pragma once

#include <cstdint>

namespace g4 {

constexpr std::int64_t kIgnoreIndex = -100;

struct LossResult {
  double loss_sum = 0;  // sum over counted tokens of -log p(label)
  std::int64_t num_tokens = 0;
};

}  // namespace g4
