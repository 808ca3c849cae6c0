// checked_math.h, and the sizes built on it: shape_numel, Tensor allocation, TensorDecl::nbytes.
#include "core/checked_math.h"

#include <gtest/gtest.h>

#include <limits>

#include "core/tensor.h"
#include "test_errors.h"

namespace g4 {
namespace {

constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kI64Min = std::numeric_limits<std::int64_t>::min();
constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

TEST(CheckedMath, ExactResultsPassThrough) {
  EXPECT_EQ(checked_mul(std::int64_t{3}, std::int64_t{-4}), -12);
  EXPECT_EQ(checked_mul(std::int64_t{1} << 31, std::int64_t{1} << 31), std::int64_t{1} << 62);
  EXPECT_EQ(checked_mul(kI64Max, std::int64_t{1}), kI64Max);
  EXPECT_EQ(checked_add(kI64Max - 1, std::int64_t{1}), kI64Max);
  EXPECT_EQ(checked_mul(std::uint64_t{1} << 32, (std::uint64_t{1} << 32) - 1),
            kU64Max - ((std::uint64_t{1} << 32) - 1));
  EXPECT_EQ(checked_add(kU64Max - 5, std::uint64_t{5}), kU64Max);
  const std::vector<std::int64_t> shape = {2, 3, 4};
  EXPECT_EQ(checked_numel(shape), 24);
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{}), 1);
  // A zero dimension makes the count 0, whatever follows it (that product is exact).
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{0, kI64Max, kI64Max}), 0);
  EXPECT_EQ(checked_nbytes(std::int64_t{1} << 61, 4), std::uint64_t{1} << 63);
  EXPECT_EQ(checked_nbytes(0, 8), 0u);
}

TEST(CheckedMath, OverflowIsAnErrorWithTheCallersContext) {
  EXPECT_EQ(test::error_of([] { checked_mul(kI64Max, std::int64_t{2}, "vocab of ", "cfg.json"); }),
            "vocab of cfg.json: size product overflows: 9223372036854775807 x 2");
  EXPECT_EQ(test::error_of([] { checked_mul(std::int64_t{-1}, kI64Min); }),
            "size product overflows: -1 x -9223372036854775808");
  EXPECT_EQ(test::error_of([] { checked_add(kI64Max, std::int64_t{1}, "total"); }),
            "total: size sum overflows: 9223372036854775807 + 1");
  EXPECT_EQ(test::error_of([] { checked_add(kI64Min, std::int64_t{-1}, "total"); }),
            "total: size sum overflows: -9223372036854775808 + -1");
  EXPECT_EQ(test::error_of([] { checked_mul(kU64Max, std::uint64_t{2}, "bytes"); }),
            "bytes: size product overflows: 18446744073709551615 x 2");
  EXPECT_EQ(test::error_of([] { checked_add(kU64Max, std::uint64_t{1}, "bytes"); }),
            "bytes: size sum overflows: 18446744073709551615 + 1");
  EXPECT_EQ(test::error_of([] {
              checked_numel(std::vector<std::int64_t>{1 << 20, std::int64_t{1} << 57}, "t");
            }),
            "t: element count overflows: shape [1048576, 144115188075855872]");
  EXPECT_EQ(test::error_of([] {
              checked_numel(std::vector<std::int64_t>{2, -3});
            }),
            "negative dimension in shape [2, -3]");
  EXPECT_EQ(test::error_of([] { checked_nbytes(std::int64_t{1} << 62, 4, "embedding"); }),
            "embedding: byte size overflows: 4611686018427387904 elements x 4");
  EXPECT_EQ(test::error_of([] { checked_nbytes(-1, 4, "t"); }), "t: negative element count -1");
  // The context may quote user input: the message stays one line.
  EXPECT_EQ(test::error_of([] { checked_add(kI64Max, std::int64_t{1}, "a\nb"); }).find('\n'),
            std::string::npos);
}

TEST(CheckedMath, ShapesAndTensorsRefuseSizesThatWrap) {
  // 2^32 x 2^32 wrapped to 0 elements before; 2^62 F32 elements wrapped to 0 bytes.
  EXPECT_NE(test::error_of([] {
              shape_numel({std::int64_t{1} << 32, std::int64_t{1} << 32});
            }).find("element count overflows"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              Tensor(DType::f32, {std::int64_t{1} << 32, std::int64_t{1} << 32});
            }).find("overflows"),
            std::string::npos);
  const std::string bytes = test::error_of([] { Tensor(DType::f32, {std::int64_t{1} << 62}); });
  EXPECT_NE(bytes.find("tensor of shape [4611686018427387904]: byte size overflows"), std::string::npos)
      << bytes;
  // A size that fits 64 bits but no machine's memory (2^50 F32 elements = 4 PiB) is a clear error too.
  const std::string huge = test::error_of([] { Tensor(DType::f32, {std::int64_t{1} << 50}); });
  EXPECT_NE(huge.find("more than this machine's memory"), std::string::npos) << huge;
  EXPECT_EQ(Tensor(DType::f32, {0, std::int64_t{1} << 62}).nbytes(), 0u);
}

}  // namespace
}  // namespace g4
