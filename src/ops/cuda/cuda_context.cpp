// cuda_context.cpp: creation and teardown of the stream and the cuBLAS/cuBLASLt handles.
#include "ops/cuda/cuda_context.h"

#include "core/cuda/cuda_check.h"

namespace g4::cuda {

bool cuda_device_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return count > 0;
}

CudaContext::CudaContext(int device, Stream stream) : device_(device) {
  G4_CUDA_CHECK(cudaSetDevice(device));
  G4_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device));
  if (stream == Stream::own) {
    G4_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    owns_stream_ = true;
  } else {
    stream_ = cudaStreamLegacy;
  }
  G4_CUBLAS_CHECK(cublasCreate(&cublas_));
  G4_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  G4_CUBLAS_CHECK(cublasLtCreate(&cublas_lt_));
  workspace_ = DeviceBuffer(32u << 20);  // cuBLAS on Hopper wants a 32 MiB workspace for its best kernels
  G4_CUBLAS_CHECK(cublasSetWorkspace(cublas_, workspace_.data(), workspace_.bytes()));
}

CudaContext::~CudaContext() {
  // Queued work may still use the workspace, which goes back to the caching allocator (and is reused at
  // once).
  if (owns_stream_) cudaStreamSynchronize(stream_);
  if (cublas_lt_ != nullptr) cublasLtDestroy(cublas_lt_);
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (owns_stream_) cudaStreamDestroy(stream_);
}

void CudaContext::synchronize() const {
  G4_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace g4::cuda
