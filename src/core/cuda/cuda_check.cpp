// cuda_check.cpp: the failure paths of the CUDA checks (cold code, kept out of the macros).
#include "core/cuda/cuda_check.h"

#include <cstdlib>
#include <cstring>

namespace g4::cuda {

void fail_cuda(cudaError_t status, const char* call, const char* file, int line) {
  fail("CUDA error ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ") in ", call, " (", file,
       ":", line, ")");
}

void fail_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  fail("cuBLAS error ", cublasGetStatusName(status), " (", cublasGetStatusString(status), ") in ", call, " (",
       file, ":", line, ")");
}

static bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("G4MOE_CUDA_SYNC_CHECK");
    return v != nullptr && std::strcmp(v, "0") != 0;
  }();
  return on;
}

void check_launch(const char* file, int line) {
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) fail_cuda(status, "kernel launch", file, line);
  if (sync_after_launch()) {
    status = cudaDeviceSynchronize();
    if (status != cudaSuccess) fail_cuda(status, "kernel execution (G4MOE_CUDA_SYNC_CHECK)", file, line);
  }
}

}  // namespace g4::cuda
