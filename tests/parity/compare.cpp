// compare.cpp: how the parity harness holds one backend's outputs against the CPU's (op_cases.h): exact or
// relative Frobenius, with NaN and Inf failing on either side, and the registry of all cases.
#include <cctype>
#include <cmath>
#include <ostream>
#include <sstream>

#include "core/dtype.h"
#include "parity/op_cases.h"

namespace g4::parity {

Tolerance exact(const char* reason) {
  return {Tolerance::Metric::exact, 0.0, reason};
}
Tolerance frobenius(double bound, const char* reason) {
  return {Tolerance::Metric::relative_frobenius, bound, reason};
}
Tolerance frobenius(double bound, const char* reason, double bf16_bound, const char* bf16_reason) {
  return {Tolerance::Metric::relative_frobenius, bound, reason, bf16_bound, bf16_reason};
}

const Backend& cpu_backend() {
  static const Backend backend{"cpu", &host_allocator(), &cpu_moe_backend()};
  return backend;
}

const std::vector<OpCase>& all_cases() {
  static const std::vector<OpCase> cases = [] {
    std::vector<OpCase> all = ops_cases();
    for (OpCase& c : moe_cases()) all.push_back(std::move(c));
    return all;
  }();
  return cases;
}

bool all_finite(const Tensor& t) {
  const float* v = t.f32();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(v[i])) return false;
  return true;
}

void PrintTo(const OpCase& c, std::ostream* os) {
  *os << c.name;
}

std::string identifier(std::string case_name) {
  for (char& ch : case_name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return case_name;
}

Comparison compare(const Output& got, const Output& want, const Tolerance& tolerance) {
  Comparison c;
  std::ostringstream detail;
  detail << got.name << ": ";
  if (got.value.shape() != want.value.shape()) {
    detail << "shape " << shape_str(got.value.shape()) << " against " << shape_str(want.value.shape());
    c.detail = detail.str();
    return c;
  }
  if (!all_finite(got.value) || !all_finite(want.value)) {
    detail << "NaN or Inf (" << (all_finite(want.value) ? "this backend" : "the CPU reference") << ")";
    c.detail = detail.str();
    c.error = INFINITY;
    return c;
  }
  // A bf16 result against the reference's bf16 rounding: one correctly rounded fp32 operation gives exactly
  // that; two fp32 results on either side of a rounding boundary differ by one bf16 ulp (2^-8 relative).
  Tensor want_rounded;
  double bound = tolerance.bound;
  if (got.bf16) {
    want_rounded = want.value.clone();
    for (std::int64_t i = 0; i < want_rounded.numel(); ++i)
      want_rounded.f32()[i] = round_to_bf16(want_rounded.f32()[i]);
    bound = tolerance.bf16_bound > 0 ? tolerance.bf16_bound : bound + 1.0 / 256;
  }
  const float* g = got.value.f32();
  const float* w = got.bf16 ? want_rounded.f32() : want.value.f32();
  const std::int64_t n = got.value.numel();
  if (tolerance.metric == Tolerance::Metric::exact || got.integral || want.integral) {
    std::int64_t differ = 0, first = -1;
    for (std::int64_t i = 0; i < n; ++i)
      if (g[i] != w[i] && differ++ == 0) first = i;
    c.error = static_cast<double>(differ);
    c.passed = differ == 0;
    if (c.passed)
      detail << "exact over " << n;
    else
      detail << differ << " of " << n << " differ (first [" << first << "]: " << g[first] << " against "
             << w[first] << ")";
    c.detail = detail.str();
    return c;
  }
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(g[i]) - w[i];
    num += d * d;
    den += static_cast<double>(w[i]) * w[i];
  }
  c.error = den == 0 ? std::sqrt(num) : std::sqrt(num / den);
  c.passed = c.error <= bound;  // false for a NaN error
  detail << "relative Frobenius " << c.error << (c.passed ? " <= " : " > ") << bound;
  c.detail = detail.str();
  return c;
}

std::vector<Comparison> compare_all(const Outputs& got, const Outputs& want, const Tolerance& tolerance) {
  std::vector<Comparison> all;
  if (got.size() != want.size()) {
    all.push_back({false, INFINITY,
                   "output count " + std::to_string(got.size()) + " against " + std::to_string(want.size())});
    return all;
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i].name != want[i].name) {
      all.push_back({false, INFINITY, "output " + got[i].name + " against " + want[i].name});
      continue;
    }
    all.push_back(compare(got[i], want[i], tolerance));
  }
  return all;
}

}  // namespace g4::parity
