// cuda_check.h: error checks for every CUDA runtime and cuBLAS call, and after every kernel launch.
//
// Invariant: a failed call throws g4::Error whose one-line message names the call, the error string and the
// source file:line; nothing in ops/cuda ignores a return code. G4_CUDA_CHECK_LAUNCH() reads the launch error
// (cudaGetLastError); set G4MOE_CUDA_SYNC_CHECK=1 in the environment to also synchronise after each launch,
// so that an asynchronous fault is reported at the kernel that caused it (slow; for debugging).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace g4::cuda {

[[noreturn]] void fail_cuda(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t status, const char* call, const char* file, int line);
void check_launch(const char* file, int line);

}  // namespace g4::cuda

#define G4_CUDA_CHECK(call)                                                                      \
  do {                                                                                           \
    cudaError_t g4_status_ = (call);                                                             \
    if (g4_status_ != cudaSuccess) ::g4::cuda::fail_cuda(g4_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define G4_CUBLAS_CHECK(call)                                                                                \
  do {                                                                                                       \
    cublasStatus_t g4_status_ = (call);                                                                      \
    if (g4_status_ != CUBLAS_STATUS_SUCCESS) ::g4::cuda::fail_cublas(g4_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define G4_CUDA_CHECK_LAUNCH() ::g4::cuda::check_launch(__FILE__, __LINE__)
