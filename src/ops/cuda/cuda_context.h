// cuda_context.h: the per-device state every CUDA op runs with: one stream, a cuBLAS handle and a cuBLASLt
// handle bound to it, and the cuBLAS workspace.
//
// Invariant: all work of one CudaContext is ordered on its stream; ops never synchronise the device unless
// their header says so. One context per thread that issues work.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "ops/cuda/device_buffer.h"

namespace g4::cuda {

// True when at least one CUDA device is usable (never throws; false on a machine without a GPU or driver).
bool cuda_device_available();

class CudaContext {
 public:
  explicit CudaContext(int device = 0);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cublasLtHandle_t cublas_lt() const { return cublas_lt_; }
  int device() const { return device_; }
  int sm_count() const { return sm_count_; }
  void synchronize() const;

 private:
  int device_ = 0;
  int sm_count_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublas_lt_ = nullptr;
  DeviceBuffer workspace_;
};

}  // namespace g4::cuda
