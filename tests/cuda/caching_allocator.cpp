// caching_allocator.cpp: the GPU's caching allocator (core/cuda/caching_allocator.h) and tensors on the CUDA
// device: data survives a round trip host -> GPU -> host bit for bit, new blocks are zero, a freed block is
// handed out again for the same size class without another cudaMalloc, the statistics follow, and host access
// to a device tensor is an error. (The size classes, shared with the host cache, are tested in tests/core.)
#include <gtest/gtest.h>

#include <cstring>

#include "core/cuda/caching_allocator.h"
#include "core/tensor.h"
#include "cuda_test_util.h"

namespace g4::cuda {
namespace {

TEST(CachingAllocator, RoundTripsReusesBlocksAndCountsBytes) {
  G4_SKIP_WITHOUT_CUDA();
  CachingAllocator gpu;
  const Tensor host = Tensor::from_floats({2, 3}, {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 7e-30f});
  const void* first_block = nullptr;
  {
    const Tensor on_gpu = host.to(gpu);
    EXPECT_EQ(on_gpu.device(), Device::cuda);
    EXPECT_EQ(on_gpu.shape(), host.shape());
    first_block = on_gpu.data();
    const Tensor back = on_gpu.to(host_allocator());
    EXPECT_EQ(std::memcmp(back.bytes(), host.bytes(), host.nbytes()), 0);
    EXPECT_EQ(gpu.stats().in_use, 512u);
    EXPECT_THROW((void)on_gpu.f32(), Error);
  }
  EXPECT_EQ(gpu.stats().in_use, 0u);
  EXPECT_EQ(gpu.stats().cached, 512u);
  const Tensor again(DType::f32, {4, 3}, gpu);  // 48 bytes: the same 512-byte class
  EXPECT_EQ(again.data(), first_block);
  EXPECT_EQ(gpu.stats().device_allocations, 1);
  const Tensor zeros = again.to(host_allocator());
  for (std::int64_t i = 0; i < zeros.numel(); ++i) EXPECT_EQ(zeros.f32()[i], 0.0f) << i;
  const Tensor big(DType::bf16, {1024, 1024}, gpu);  // 2 MiB class
  EXPECT_EQ(gpu.stats().device_allocations, 2);
  EXPECT_EQ(gpu.stats().peak_in_use, 512u + (2u << 20));
  gpu.release_cached();
  EXPECT_EQ(gpu.stats().cached, 0u);
}

}  // namespace
}  // namespace g4::cuda
