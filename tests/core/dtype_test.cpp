#include <gtest/gtest.h>

#include <cmath>

#include "core/dtype.h"
#include "core/tensor.h"

namespace g4 {

TEST(Bf16, ExactValuesSurviveRoundTrip) {
  for (float v : {0.0f, 1.0f, -2.5f, 53.0f, 39.25f, 50.5f, 73.5f, 1e-30f}) {
    EXPECT_EQ(bf16_to_f32(f32_to_bf16(v)), round_to_bf16(v));
  }
  EXPECT_EQ(round_to_bf16(53.0f), 53.0f);
}

TEST(Bf16, RoundsToNearestEven) {
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(round_to_bf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): goes up.
  EXPECT_EQ(round_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
  // sqrt(2816) = 53.066... rounds to 53.0 in bf16 (the 26B-A4B embedding scale).
  EXPECT_EQ(round_to_bf16(std::sqrt(2816.0f)), 53.0f);
}

TEST(Bf16, NanStaysNan) {
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(F16, KnownEncodings) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  for (std::uint32_t bits = 0; bits < 0x7c00; bits += 7) {
    EXPECT_EQ(f32_to_f16(f16_to_f32(static_cast<std::uint16_t>(bits))), bits);
  }
}

TEST(DType, NamesRoundTrip) {
  for (DType d :
       {DType::bf16, DType::f16, DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean, DType::u8})
    EXPECT_EQ(dtype_from_name(dtype_name(d)), d);
  EXPECT_FALSE(dtype_from_name("F8_E4M3").has_value());
}

TEST(Tensor, ConvertsBetweenFloatTypes) {
  Tensor t = Tensor::from_floats({2, 2}, {1.0f, -0.5f, 3.140625f, 1e-3f});
  Tensor b = t.to_dtype(DType::bf16);
  EXPECT_EQ(b.nbytes(), 8u);
  Tensor back = b.to_f32();
  EXPECT_EQ(back.f32()[0], 1.0f);
  EXPECT_EQ(back.f32()[2], 3.140625f);
  EXPECT_EQ(back.f32()[3], round_to_bf16(1e-3f));
  EXPECT_EQ(t.to_dtype(DType::f64).to_f32().f32()[3], 1e-3f);
}

}  // namespace g4
