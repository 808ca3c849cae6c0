// The backend-parity registry on the CPU (in CI): every function declared in src/ops/ops.h has a case (the
// header is parsed here, so a new op without a parity case fails), every case states its tolerance, the
// comparison fails on NaN and Inf, and every case run twice on the CPU backend gives finite outputs, bit for
// bit the same. The CUDA side of the harness is tests/cuda/backend_parity.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "core/dtype.h"
#include "core/regex.h"
#include "parity/op_cases.h"
#include "test_paths.h"

namespace g4::parity {
namespace {

// The names of the functions declared in ops/ops.h's namespace: comments, preprocessor lines and struct
// bodies removed, then the identifier before the first '(' of each ';'-terminated declaration.
std::set<std::string> declared_ops() {
  std::ifstream in(test::source_path("src/ops/ops.h"));
  std::string text, line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find("//"));
    if (line.find_first_not_of(" \t") != std::string::npos && line[line.find_first_not_of(" \t")] == '#')
      continue;
    text += line + "\n";
  }
  text = std::regex_replace(text, std::regex(R"(struct\s+\w+\s*\{[^}]*\}\s*;)"), "");
  text = std::regex_replace(text, std::regex(R"(namespace\s+[\w:]+\s*\{|\})"), "");
  std::set<std::string> names;
  std::stringstream declarations(text);
  std::string declaration;
  const std::regex function(R"(^\s*[\w:<>&*\s]+?[\s&*](\w+)\s*\()");
  while (std::getline(declarations, declaration, ';')) {
    std::smatch m;
    if (std::regex_search(declaration, m, function)) names.insert(m[1]);
  }
  return names;
}

TEST(BackendParity, EveryFunctionOfOpsHeaderHasACase) {
  const std::set<std::string> declared = declared_ops();
  // The parser must see the header's ops, not nothing.
  ASSERT_GE(declared.size(), 25u);
  for (const char* known : {"add_", "linear", "attention_backward", "adamw_", "sum_of_squares"})
    EXPECT_TRUE(declared.count(known)) << "parsed ops/ops.h lacks " << known;
  std::set<std::string> covered;
  for (const OpCase& c : all_cases())
    if (!c.op.empty()) covered.insert(c.op);
  for (const std::string& op : declared)
    EXPECT_TRUE(covered.count(op)) << "ops::" << op << " has no case in tests/parity (op_cases.cpp)";
  for (const std::string& op : covered)
    EXPECT_TRUE(declared.count(op)) << "a case names ops::" << op << ", which ops/ops.h does not declare";
}

TEST(BackendParity, CasesHaveUniqueNamesAndStatedTolerances) {
  std::set<std::string> names;
  int moe = 0;
  for (const OpCase& c : all_cases()) {
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case " << c.name;
    EXPECT_GT(std::strlen(c.tolerance.reason), 10u) << c.name << " states no reason for its tolerance";
    if (c.tolerance.bf16_bound > 0) {
      EXPECT_LE(c.tolerance.bf16_bound, 1e-2) << c.name;
      EXPECT_GT(std::strlen(c.tolerance.bf16_reason), 10u)
          << c.name << " states no reason for its bf16 bound";
    }
    if (c.tolerance.metric == Tolerance::Metric::relative_frobenius) {
      EXPECT_TRUE(c.tolerance.bound > 0 && c.tolerance.bound <= 1e-2) << c.name;
    }
    moe += c.op.empty();
  }
  EXPECT_EQ(moe, 5) << "gate forward and backward, permutation, experts forward and backward";
}

TEST(BackendParity, ComparisonFailsOnNanAndInfAndPassesWithinTheBound) {
  auto out = [](std::vector<float> v) { return Output{"o", Tensor::from_floats({3}, v)}; };
  const Tolerance loose = frobenius(1.0, "loose"), strict = exact("exact");
  EXPECT_TRUE(compare(out({1, 2, 3}), out({1, 2, 3}), strict).passed);
  EXPECT_FALSE(compare(out({1, 2, 3.5f}), out({1, 2, 3}), strict).passed);
  EXPECT_TRUE(compare(out({1, 2, 3.01f}), out({1, 2, 3}), loose).passed);
  EXPECT_FALSE(compare(out({1, 2, 3.01f}), out({1, 2, 3}), frobenius(1e-4, "tight")).passed);
  for (const float bad : {NAN, INFINITY, -INFINITY}) {
    EXPECT_FALSE(compare(out({1, bad, 3}), out({1, 2, 3}), loose).passed);
    EXPECT_FALSE(compare(out({1, 2, 3}), out({1, bad, 3}), loose).passed);
    EXPECT_FALSE(compare(out({1, bad, 3}), out({1, bad, 3}), loose).passed) << "NaN never equals NaN here";
    EXPECT_FALSE(compare(out({1, bad, 3}), out({1, bad, 3}), strict).passed);
  }
  Output integral = out({1, 2, 3});
  integral.integral = true;
  EXPECT_FALSE(compare(out({1, 2, 3.01f}), integral, loose).passed) << "integral outputs compare exactly";
  EXPECT_FALSE(compare(Output{"o", Tensor::from_floats({1, 3}, {1, 2, 3})}, out({1, 2, 3}), loose).passed);
}

TEST(BackendParity, Bf16OutputsAreHeldToTheBf16RoundingOfTheReference) {
  const Output want{"o", Tensor::from_floats({4}, {2.7f, -2.71f, 2.69f, 2.72f})};
  Output got{"o", want.value.clone(), false, /*bf16=*/true};
  for (std::int64_t i = 0; i < 4; ++i) got.value.f32()[i] = round_to_bf16(got.value.f32()[i]);
  EXPECT_TRUE(compare(got, want, exact("one rounding")).passed) << "the reference is rounded the same way";
  got.value.f32()[0] += 1.0f / 64;  // one bf16 ulp at 2.7
  EXPECT_FALSE(compare(got, want, exact("one rounding")).passed);
  EXPECT_TRUE(compare(got, want, frobenius(1e-6, "fp32 order")).passed) << "the bound widens by 2^-8";
  got.value.f32()[1] += 1.0f / 16;
  EXPECT_FALSE(compare(got, want, frobenius(1e-6, "fp32 order")).passed);
}

class CpuParity : public testing::TestWithParam<OpCase> {};

TEST_P(CpuParity, TwoRunsAreFiniteAndBitIdentical) {
  const OpCase& c = GetParam();
  const Outputs first = c.run(cpu_backend()), second = c.run(cpu_backend());
  ASSERT_FALSE(first.empty());
  ASSERT_EQ(first.size(), second.size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    const Tensor &a = first[i].value, &b = second[i].value;
    SCOPED_TRACE(c.name + " output " + first[i].name);
    ASSERT_EQ(a.device(), Device::cpu);
    ASSERT_EQ(a.dtype(), DType::f32);
    ASSERT_GT(a.numel(), 0);
    EXPECT_TRUE(all_finite(a));
    ASSERT_EQ(a.shape(), b.shape());
    EXPECT_EQ(std::memcmp(a.bytes(), b.bytes(), a.nbytes()), 0) << "not bit-identical run to run";
    EXPECT_TRUE(compare(second[i], first[i], c.tolerance).passed);
  }
}

std::string test_name(const testing::TestParamInfo<OpCase>& info) {
  return parity::identifier(info.param.name);
}

INSTANTIATE_TEST_SUITE_P(AllCases, CpuParity, testing::ValuesIn(all_cases()), test_name);

}  // namespace
}  // namespace g4::parity
