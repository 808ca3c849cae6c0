// Tensors know their device and come from an allocator: host tensors as before; the host arena hands out
// planned, zeroed slices, reuses its block after reset(), refuses to reset under a live tensor and says when
// it is full. (The GPU's caching allocator is tested in tests/cuda.)
#include <gtest/gtest.h>

#include <cstring>

#include "core/allocator.h"
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

TEST(Allocator, TheArenaPlansZeroedSlicesAndReusesItsBlock) {
  HostArena arena(4096);
  const void* first = nullptr;
  {
    Tensor a(DType::f32, {10}, arena);  // 40 bytes -> one 64-byte slice
    Tensor b(DType::f32, {100}, arena);
    EXPECT_EQ(arena.used_bytes(), 64u + 448u);
    EXPECT_EQ(arena.live_slices(), 2);
    first = a.data();
    for (std::int64_t i = 0; i < b.numel(); ++i) b.f32()[i] = 7.0f;  // dirty the block
    EXPECT_NE(test::error_of([&] { arena.reset(); }).find("still alive"), std::string::npos);
  }
  arena.reset();
  EXPECT_EQ(arena.used_bytes(), 0u);
  Tensor c(DType::f32, {128}, arena);  // over the dirtied bytes: must read as zeros again
  EXPECT_EQ(c.data(), first);
  for (std::int64_t i = 0; i < c.numel(); ++i) ASSERT_EQ(c.f32()[i], 0.0f) << i;
  EXPECT_EQ(arena.peak_bytes(), 512u);
  EXPECT_NE(test::error_of([&] { Tensor d(DType::f32, {2000}, arena); }).find("arena of 4096 bytes is full"),
            std::string::npos);
}

}  // namespace
}  // namespace g4
