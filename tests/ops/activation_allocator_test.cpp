// Op outputs come from the activation allocator an ActivationScope installs (core/allocator.h), scopes nest
// and restore the previous one, and a device without an allocator is a one-line error.
#include <gtest/gtest.h>

#include "core/allocator.h"
#include "core/caching_allocator.h"
#include "ops/ops.h"
#include "test_errors.h"

namespace g4 {
namespace {

TEST(Allocator, OpOutputsComeFromTheInstalledActivationAllocator) {
  const Tensor x = Tensor::from_floats({4}, {1.0f, 2.0f, 3.0f, 4.0f});
  EXPECT_EQ(&activation_allocator(Device::cpu), &host_allocator());
  HostCachingAllocator cache;
  {
    const ActivationScope scope(cache);
    EXPECT_EQ(&activation_allocator(Device::cpu), &cache);
    const Tensor y = ops::scaled(x, 2.0f);
    EXPECT_EQ(cache.stats().in_use, 512u);
    EXPECT_EQ(y.f32()[3], 8.0f);
    HostCachingAllocator inner;
    {
      const ActivationScope nested(inner);
      EXPECT_EQ(&activation_allocator(Device::cpu), &inner);
    }
    EXPECT_EQ(&activation_allocator(Device::cpu), &cache);
  }
  EXPECT_EQ(&activation_allocator(Device::cpu), &host_allocator());
  EXPECT_NE(test::error_of([] { activation_allocator(Device::cuda); }).find("no activation allocator"),
            std::string::npos);
}

}  // namespace
}  // namespace g4
