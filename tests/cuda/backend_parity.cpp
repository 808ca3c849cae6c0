// Backend parity on the GPU: every case of the parity registry (tests/parity/op_cases.h: every op of
// ops/ops.h, and the MoE ops with CUDA kernels) runs on the CPU backend and on CUDA, with the same inputs,
// and each output is held to the tolerance its case states (NaN or Inf never passes). An ops.h op that has no
// CUDA version yet is reported as such, never as passing: its test is skipped with "cuda: not yet", and the
// table printed at the end (one row per case) counts it apart. The MoE cases have kernels: for them a missing
// version fails.
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

// Prints "case | cuda: pass / FAIL / not yet | detail" for every case that ran, and the counts.
class ParityTable : public testing::Environment {
 public:
  void TearDown() override {
    if (rows().empty()) return;
    int passed = 0, failed = 0, not_yet = 0;
    std::cout
        << "\nBackend parity, CPU against CUDA (tolerances: tests/parity/op_cases*.cpp, moe_cases.cpp):\n";
    for (const Row& r : rows()) {
      std::cout << "  " << std::left << std::setw(28) << r.name << " | cuda: " << std::setw(7) << r.status
                << " | " << r.detail << "\n";
      passed += r.status == "pass";
      failed += r.status == "FAIL";
      not_yet += r.status == "not yet";
    }
    std::cout << "Backend parity: " << rows().size() << " cases: " << passed << " pass on CUDA, " << failed
              << " fail, " << not_yet << " have no CUDA version yet (skipped, not counted as passing)\n\n";
  }
};
[[maybe_unused]] testing::Environment* const kTable = testing::AddGlobalTestEnvironment(new ParityTable);

const parity::Backend& cuda_backend() {
  install_cuda_kernels();     // the ops.h ops' CUDA versions (ops/cuda/kernels.h)
  static CudaMoeBackend moe;  // built on first use: only on a machine with a device
  static const parity::Backend backend{"cuda", &cuda_allocator(), &moe};
  return backend;
}

class CudaParity : public testing::TestWithParam<OpCase> {};

TEST_P(CudaParity, MatchesTheCpuBackendAtTheCaseTolerance) {
  G4_SKIP_WITHOUT_CUDA();
  const OpCase& c = GetParam();
  const parity::Outputs want = c.run(parity::cpu_backend());
  parity::Outputs got;
  try {
    got = c.run(cuda_backend());
  } catch (const Error& e) {
    if (!parity::is_not_yet(e.what())) {
      rows().push_back({c.name, "FAIL", e.what()});
      FAIL() << c.name << ": " << e.what();
    }
    if (c.op.empty()) {
      rows().push_back({c.name, "FAIL", "a MoE case has CUDA kernels, yet: " + std::string(e.what())});
      FAIL() << c.name << ": " << e.what();
    }
    rows().push_back({c.name, "not yet", "ops::" + c.op + " has no CUDA version"});
    GTEST_SKIP() << c.name << " | cuda: not yet (" << e.what() << ")";
  }
  const std::vector<parity::Comparison> comparisons = parity::compare_all(got, want, c.tolerance);
  bool all_passed = true;
  std::string detail;
  for (const parity::Comparison& m : comparisons) {
    EXPECT_TRUE(m.passed) << c.name << " " << m.detail << " (" << c.tolerance.reason << ")";
    all_passed = all_passed && m.passed;
    detail += (detail.empty() ? "" : "; ") + m.detail;
  }
  rows().push_back({c.name, all_passed ? "pass" : "FAIL", detail});
}

std::string test_name(const testing::TestParamInfo<OpCase>& info) {
  return parity::identifier(info.param.name);
}

INSTANTIATE_TEST_SUITE_P(AllCases, CudaParity, testing::ValuesIn(parity::all_cases()), test_name);

}  // namespace
}  // namespace g4::cuda::test
