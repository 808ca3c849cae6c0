#include "ops/cpu/blas_setup.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace g4 {

namespace {

const char* best_core_type() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

}  // namespace

void ensure_openblas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("G4_BLAS_REEXEC"))
    return;  // user's choice, or done once
  const char* core = openblas_get_corename();
  if (!core || (std::strcmp(core, "Prescott") != 0 && std::strcmp(core, "Core2") != 0 &&
                std::strcmp(core, "Nehalem") != 0 && std::strcmp(core, "Sandybridge") != 0))
    return;
  const char* better = best_core_type();
  if (!better) return;
  setenv("OPENBLAS_CORETYPE", better, 1);
  setenv("G4_BLAS_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on with the slow kernels
}

}  // namespace g4
