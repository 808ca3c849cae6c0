// op_cases.h: the backend-parity registry: one case per op of ops/ops.h (forward and backward) and per MoE op
// that has a CUDA kernel (the Gemma 4 gate forward and backward, the token permutation, the grouped experts
// forward and backward). A case builds fixed-seed inputs on the host, runs its op on a Backend and returns
// the outputs as named host f32 tensors; each case states the tolerance its outputs must meet against the CPU
// backend's, with the reason.
//
// ops.h cases move their inputs to the backend's allocator in its dtype (case_util.h's on(); f32-only tensors
// through on_f32()) and call the op there; an op without a version for that device and dtype throws ops.cpp's
// g4::Error, which fails the case. MoE cases go through the backend's MoeBackend (moe_backend.h): the CPU one
// calls moe/ (float), the CUDA one the kernels of ops/cuda (tests/cuda).
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/tensor.h"
#include "parity/moe_backend.h"

namespace g4::parity {

// How one output is held against the CPU backend's.
struct Tolerance {
  enum class Metric {
    exact,               // bit for bit
    relative_frobenius,  // ||got - want|| / ||want|| <= bound (||got - want|| when want is all zero)
  };
  Metric metric = Metric::exact;
  double bound = 0;
  const char* reason = "";
  // The bound of bf16 outputs when the bf16 kernel rounds intermediates too (0: bound + one bf16 ulp).
  double bf16_bound = 0;
  const char* bf16_reason = "";
};
Tolerance exact(const char* reason);
Tolerance frobenius(double bound, const char* reason);
// Relative Frobenius with its own bound for bf16 outputs.
Tolerance frobenius(double bound, const char* reason, double bf16_bound, const char* bf16_reason);

struct Output {
  std::string name;
  Tensor value;           // host, f32
  bool integral = false;  // indices, offsets: always compared exactly, whatever the case's tolerance
  bool bf16 = false;      // computed in bf16 (widened to f32 here): compared against the bf16 rounding of the
                          // reference, the bound widened by one bf16 ulp (2^-8; compare())
};
using Outputs = std::vector<Output>;

struct Backend {
  std::string name;      // "cpu", "cuda", "cuda-bf16"
  Allocator* allocator;  // where ops.h cases put their inputs
  MoeBackend* moe;       // what MoE cases call
  // The dtype ops.h cases give their activations and weights (parameter gradients, logits and optimizer
  // state stay f32); bf16 inputs are the bf16 roundings of the f32 ones.
  DType dtype = DType::f32;
  // A reference for a bf16 backend: f32 tensors holding the bf16 roundings of the inputs, so that both
  // backends start from the same numbers.
  bool bf16_inputs = false;
};
// The host allocator and moe/ on the CPU.
const Backend& cpu_backend();

struct OpCase {
  std::string name;  // unique: the op, with a suffix for a variant ("rms_norm/no_weight")
  std::string op;    // the function of ops/ops.h it runs; empty for the MoE cases
  Tolerance tolerance;
  std::function<Outputs(const Backend&)> run;
};

// gtest prints a case parameter as its name.
void PrintTo(const OpCase& c, std::ostream* os);

// Every case: the ops.h cases (op_cases.cpp), then the MoE cases (moe_cases.cpp).
const std::vector<OpCase>& all_cases();
std::vector<OpCase> ops_cases();
std::vector<OpCase> moe_cases();

// The comparison of one output; passed is false on any NaN or Inf on either side, on a shape difference, and
// when the error exceeds the bound. error is the measured one (relative Frobenius, or the count of differing
// elements for exact).
struct Comparison {
  bool passed = false;
  double error = 0;
  std::string detail;  // one line: what failed, or the error against the bound
};
Comparison compare(const Output& got, const Output& want, const Tolerance& tolerance);
// All of a case's outputs, in order; the names must match.
std::vector<Comparison> compare_all(const Outputs& got, const Outputs& want, const Tolerance& tolerance);

// Whether every element is finite.
bool all_finite(const Tensor& t);

// The case's name as a test name: every character other than a letter or digit becomes '_'.
std::string identifier(std::string case_name);

}  // namespace g4::parity
