// moe_test_util.h: deterministic random inputs and a central finite-difference helper for the MoE tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace g4::test {

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

// Central difference of a scalar function f at every entry of `param` (restored afterwards).
inline std::vector<double> numeric_gradient(std::vector<double>& param, const std::function<double()>& f,
                                            double eps = 1e-6) {
  std::vector<double> g(param.size());
  for (std::size_t i = 0; i < param.size(); ++i) {
    const double keep = param[i];
    param[i] = keep + eps;
    const double up = f();
    param[i] = keep - eps;
    const double down = f();
    param[i] = keep;
    g[i] = (up - down) / (2 * eps);
  }
  return g;
}

// max |a - b| / (atol + rtol·|b|) over entries; ≤ 1 means every entry is within tolerance. NaN gives +inf.
inline double tolerance_ratio(const std::vector<double>& a, const std::vector<double>& b, double atol,
                              double rtol) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double r = std::abs(a[i] - b[i]) / (atol + rtol * std::abs(b[i]));
    if (!(r <= worst)) worst = std::isnan(r) ? INFINITY : r;
  }
  return a.size() == b.size() ? worst : INFINITY;
}

template <class T>
double dot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

}  // namespace g4::test
