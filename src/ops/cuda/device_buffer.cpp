// device_buffer.cpp: cudaMalloc/cudaFree behind DeviceBuffer, and the arena's bump allocation.
#include "ops/cuda/device_buffer.h"

#include "core/cuda/cuda_check.h"

namespace g4::cuda {

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) G4_CUDA_CHECK(cudaMalloc(&data_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);  // no throw from a destructor; a failed free leaks at worst
}

void* DeviceArena::alloc(std::size_t bytes) {
  std::size_t size = aligned(bytes);
  check(used_ + size <= buffer_.bytes(), "device arena full: asked ", bytes, " bytes with ", used_, " of ",
        buffer_.bytes(), " used (ops/cuda/device_buffer.cpp)");
  void* p = static_cast<char*>(buffer_.data()) + used_;
  used_ += size;
  return p;
}

}  // namespace g4::cuda
