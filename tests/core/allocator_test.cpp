// Tensors know their device and come from an allocator: host tensors as before; the host caching allocator
// hands a freed block out again (zeroed) for its size class and counts bytes. (Op outputs and the activation
// allocator: tests/ops/activation_allocator_test.cpp; the GPU's caching allocator: tests/cuda.)
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "core/allocator.h"
#include "core/caching_allocator.h"
#include "core/tensor.h"
#include "test_errors.h"

namespace g4 {
namespace {

TEST(Allocator, HostTensorsAreOnTheCpuAndCopyToItself) {
  const Tensor t = Tensor::from_floats({3}, {1.0f, 2.0f, 3.0f});
  EXPECT_EQ(t.device(), Device::cpu);
  const Tensor copy = t.to(host_allocator());
  EXPECT_NE(copy.data(), t.data());
  EXPECT_EQ(std::memcmp(copy.bytes(), t.bytes(), t.nbytes()), 0);
  EXPECT_STREQ(device_name(Device::cuda), "cuda");
}

TEST(CachingAllocator, TheHostCacheReusesBlocksZeroedAndCountsBytes) {
  HostCachingAllocator cache;
  const void* first = nullptr;
  {
    Tensor a(DType::f32, {10}, cache);  // 40 bytes: the 512-byte class
    first = a.data();
    for (std::int64_t i = 0; i < a.numel(); ++i) a.f32()[i] = 7.0f;  // dirty the block
    EXPECT_EQ(cache.stats().in_use, 512u);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) % 64, 0u);
  }
  EXPECT_EQ(cache.stats().in_use, 0u);
  EXPECT_EQ(cache.stats().cached, 512u);
  const Tensor again(DType::f32, {100}, cache);  // 400 bytes: the same class, the same block, zero again
  EXPECT_EQ(again.data(), first);
  for (std::int64_t i = 0; i < again.numel(); ++i) ASSERT_EQ(again.f32()[i], 0.0f) << i;
  EXPECT_EQ(cache.stats().device_allocations, 1);
  const Tensor big(DType::f32, {1 << 18}, cache);  // 1 MiB: the 2 MiB class
  EXPECT_EQ(cache.stats().device_allocations, 2);
  EXPECT_EQ(cache.stats().peak_in_use, 512u + (2u << 20));
  cache.release_cached();
  EXPECT_EQ(cache.stats().cached, 0u);
}

TEST(CachingAllocator, SizeClassesBoundTheWaste) {
  EXPECT_EQ(CachingAllocatorBase::size_class(1), 512u);
  EXPECT_EQ(CachingAllocatorBase::size_class(512), 512u);
  EXPECT_EQ(CachingAllocatorBase::size_class(513), 1024u);
  EXPECT_EQ(CachingAllocatorBase::size_class((1u << 20) - 1), 1u << 20);
  EXPECT_EQ(CachingAllocatorBase::size_class(1u << 20), 2u << 20);
  EXPECT_EQ(CachingAllocatorBase::size_class((2u << 20) + 1), 4u << 20);
}

}  // namespace
}  // namespace g4
