// cuda_context.h: the per-device state every CUDA op runs with: one stream, a cuBLAS handle and a cuBLASLt
// handle bound to it, and the cuBLAS workspace.
//
// Invariant: all work of one CudaContext is ordered on its stream; ops never synchronise the device unless
// their header says so. One context per thread that issues work. A context on the legacy default stream
// (Stream::legacy_default) orders its work with the op interface's kernels (ops/cuda/kernels.h), which run
// there; otherwise the context owns a non-blocking stream.
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
  enum class Stream { own, legacy_default };
  explicit CudaContext(int device = 0, Stream stream = Stream::own);
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
  bool owns_stream_ = false;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublas_lt_ = nullptr;
  DeviceBuffer workspace_;
};

}  // namespace g4::cuda
