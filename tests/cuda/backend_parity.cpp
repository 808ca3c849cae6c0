// Backend parity on the GPU: every case of the parity registry (tests/parity/op_cases.h: every op of
// ops/ops.h, and the MoE ops with CUDA kernels) runs on the CPU backend and on CUDA, with the same inputs,
// and each output is held to the tolerance its case states (NaN or Inf never passes); every op must have a
// CUDA version (a missing one fails). The ops.h cases run twice on CUDA: in f32 (CudaParity) and in bf16
// (CudaBf16Parity: activations and weights bf16, parameter gradients, logits and optimizer state f32), the
// bf16 run against the CPU on the bf16-rounded inputs, each bf16 output against the bf16 rounding of the
// CPU's (compare(): the case's bound plus one bf16 ulp). A table printed at the end has one row per run.
#include <iomanip>
#include <iostream>

#include "core/cuda/caching_allocator.h"
#include "core/error.h"
#include "cuda_test_util.h"
#include "ops/cuda/kernels.h"
#include "parity/op_cases.h"
#include "parity_moe_cuda.h"

namespace g4::cuda::test {
namespace {

using parity::OpCase;

struct Row {
  std::string name, status, detail;
};
std::vector<Row>& rows() {
  static std::vector<Row> table;
  return table;
}

// Prints "case | pass / FAIL | detail" for every run, and the counts.
class ParityTable : public testing::Environment {
 public:
  void TearDown() override {
    if (rows().empty()) return;
    int passed = 0, failed = 0;
    std::cout
        << "\nBackend parity, CPU against CUDA (tolerances: tests/parity/op_cases*.cpp, moe_cases.cpp):\n";
    for (const Row& r : rows()) {
      std::cout << "  " << std::left << std::setw(34) << r.name << " | " << std::setw(4) << r.status << " | "
                << r.detail << "\n";
      passed += r.status == "pass";
      failed += r.status == "FAIL";
    }
    std::cout << "Backend parity: " << rows().size() << " runs: " << passed << " pass, " << failed
              << " fail\n\n";
  }
};
[[maybe_unused]] testing::Environment* const kTable = testing::AddGlobalTestEnvironment(new ParityTable);

const parity::Backend& cuda_backend(DType dtype) {
  install_cuda_kernels();     // the ops.h ops' CUDA versions (ops/cuda/kernels.h)
  static CudaMoeBackend moe;  // built on first use: only on a machine with a device
  static const parity::Backend f32{"cuda", &cuda_allocator(), &moe};
  static const parity::Backend bf16{"cuda-bf16", &cuda_allocator(), &moe, DType::bf16};
  return dtype == DType::bf16 ? bf16 : f32;
}

void run_case(const OpCase& c, DType dtype) {
  parity::Backend reference = parity::cpu_backend();
  reference.bf16_inputs = dtype == DType::bf16;
  const std::string name = c.name + (dtype == DType::bf16 ? " (bf16)" : "");
  const parity::Outputs want = c.run(reference);
  parity::Outputs got;
  try {
    got = c.run(cuda_backend(dtype));
  } catch (const Error& e) {
    rows().push_back({name, "FAIL", e.what()});
    FAIL() << name << ": " << e.what();
  }
  const std::vector<parity::Comparison> comparisons = parity::compare_all(got, want, c.tolerance);
  bool all_passed = true;
  std::string detail;
  for (const parity::Comparison& m : comparisons) {
    EXPECT_TRUE(m.passed) << name << " " << m.detail << " (" << c.tolerance.reason << ")";
    all_passed = all_passed && m.passed;
    detail += (detail.empty() ? "" : "; ") + m.detail;
  }
  rows().push_back({name, all_passed ? "pass" : "FAIL", detail});
}

class CudaParity : public testing::TestWithParam<OpCase> {};
TEST_P(CudaParity, MatchesTheCpuBackendAtTheCaseTolerance) {
  G4_SKIP_WITHOUT_CUDA();
  run_case(GetParam(), DType::f32);
}

class CudaBf16Parity : public testing::TestWithParam<OpCase> {};
TEST_P(CudaBf16Parity, MatchesTheCpuBackendOnBf16Inputs) {
  G4_SKIP_WITHOUT_CUDA();
  run_case(GetParam(), DType::bf16);
}

std::string test_name(const testing::TestParamInfo<OpCase>& info) {
  return parity::identifier(info.param.name);
}

INSTANTIATE_TEST_SUITE_P(AllCases, CudaParity, testing::ValuesIn(parity::all_cases()), test_name);
INSTANTIATE_TEST_SUITE_P(OpsCases, CudaBf16Parity, testing::ValuesIn(parity::ops_cases()), test_name);

}  // namespace
}  // namespace g4::cuda::test
