// fixture_cases.h: the reference cases under tests/fixtures/ (made by tools/make_fixtures.py with
// transformers 5.17.0 in float64) and helpers to compare against them.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "core/batch.h"
#include "core/tensor.h"

namespace g4::test {

inline const std::vector<std::string>& fixture_cases() {
  static const std::vector<std::string> cases = {
      "moe_26b", "dense_e2b", "dense_31b", "moe_padding", "moe_packed", "released_layout", "bf16_checkpoint"};
  return cases;
}

// Relative Frobenius error ||a - b|| / ||b|| over rows [B*S, width] whose attention_mask is 1 (all rows when
// the batch has no mask). NaN anywhere gives NaN (so a NaN never passes a `<=` check).
inline double relative_error(const Tensor& actual_f32, const Tensor& expected_f64, const Batch& batch) {
  const std::int64_t rows = batch.tokens();
  const std::int64_t width = expected_f64.numel() / rows;
  double diff = 0, norm = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    if (!batch.attention_mask.empty() && !batch.attention_mask[r]) continue;
    for (std::int64_t i = 0; i < width; ++i) {
      const double a = actual_f32.f32()[r * width + i], e = expected_f64.f64()[r * width + i];
      if (std::isnan(a) || std::isnan(e)) return NAN;
      diff += (a - e) * (a - e);
      norm += e * e;
    }
  }
  return std::sqrt(diff / norm);
}

}  // namespace g4::test
