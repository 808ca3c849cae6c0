// image_decode.h + image_processor.h against transformers 5.17's Gemma4ImageProcessorPil on real photographs
// (tests/fixtures/images, tools/make_image_fixtures.py): every pixel value within 1e-6, every patch position
// and the soft-token count equal; and the files g4moe refuses, each with one line naming the file.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "data/image_decode.h"
#include "data/image_processor.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace g4 {
namespace {

const std::string kDir = std::string(G4_SOURCE_DIR) + "/tests/fixtures/images/";

std::vector<std::uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ImageProcessor, MatchesTransformersOnRealPhotos) {
  const Json cases = read_json_file(kDir + "cases.json");
  const auto expected = SafetensorsFile::open(kDir + "expected.safetensors");
  ASSERT_GE(cases.size(), 17u);
  for (const Json& c : cases) {
    const std::string name = c["case"].get<std::string>();
    SCOPED_TRACE(name);
    const ImageProcessorConfig config = parse_image_processor_config(c["processor"], name);
    const RgbImage image = read_image_file(kDir + c["file"].get<std::string>());
    EXPECT_EQ(image.width, c["upright_size"][0].get<std::int64_t>());
    EXPECT_EQ(image.height, c["upright_size"][1].get<std::int64_t>());
    const ProcessedImage out = process_image(image, config, name);
    EXPECT_EQ(out.soft_tokens, c["num_soft_tokens"].get<std::int64_t>());

    const TensorInfo* positions = expected->find(name + ".positions");
    ASSERT_NE(positions, nullptr);
    ASSERT_EQ(positions->shape[0], out.patches);
    const auto* xy = reinterpret_cast<const std::int64_t*>(expected->view(*positions).data);
    for (std::int64_t i = 0; i < out.patches; ++i) {
      ASSERT_EQ(out.xs[i], xy[2 * i]) << "patch " << i;
      ASSERT_EQ(out.ys[i], xy[2 * i + 1]) << "patch " << i;
    }

    const TensorInfo* u8 = expected->find(name + ".pixels_u8");
    const TensorInfo* f32 = expected->find(name + ".pixel_values");
    ASSERT_TRUE(u8 || f32);
    const std::int64_t values = (u8 ? u8 : f32)->shape[0] * (u8 ? u8 : f32)->shape[1];
    ASSERT_EQ(static_cast<std::size_t>(values), out.pixel_values.size());
    double worst = 0;
    std::int64_t worst_at = -1;
    for (std::int64_t i = 0; i < values; ++i) {
      const double want =
          u8 ? static_cast<double>(reinterpret_cast<const std::uint8_t*>(expected->view(*u8).data)[i]) / 255.0
             : static_cast<double>(reinterpret_cast<const float*>(expected->view(*f32).data)[i]);
      const double diff = std::abs(static_cast<double>(out.pixel_values[i]) - want);
      ASSERT_TRUE(std::isfinite(out.pixel_values[i])) << "value " << i;
      if (diff > worst) worst = diff, worst_at = i;
    }
    EXPECT_LE(worst, 1e-6) << "worst at value " << worst_at << " of " << values;
  }
}

TEST(ImageProcessor, TargetSizeFollowsThePatchBudget) {
  ImageProcessorConfig c;  // patch 16, 280 soft tokens, 3x3 pooling: 2520 patches, sides multiples of 48
  EXPECT_EQ(target_image_size(300, 451, c, "x"), (std::array<std::int64_t, 2>{624, 960}));
  // A side that rounds to nothing takes one pooling window; the other its ratio, capped at the budget.
  EXPECT_EQ(target_image_size(10, 1000, c, "x"), (std::array<std::int64_t, 2>{48, 8016}));
  EXPECT_EQ(target_image_size(2, 1000, c, "x"), (std::array<std::int64_t, 2>{48, 280 * 48}));
  EXPECT_EQ(target_image_size(1, 100000, c, "x"), (std::array<std::int64_t, 2>{48, 280 * 48}));
  for (std::int64_t h : {1, 7, 48, 333, 1000, 4097})
    for (std::int64_t w : {1, 5, 48, 640, 3001}) {
      if (h * w < 4) continue;
      const auto [th, tw] = target_image_size(h, w, c, "x");
      EXPECT_EQ(th % 48, 0);
      EXPECT_EQ(tw % 48, 0);
      EXPECT_LE((th / 16) * (tw / 16), 2520) << h << "x" << w;
    }
}

TEST(ImageProcessor, ResizeKeepsFlatImagesFlat) {
  // Pillow's normalised taps sum to one: a constant image stays that constant at any size.
  RgbImage flat{37, 23, std::vector<std::uint8_t>(37 * 23 * 3)};
  for (std::size_t i = 0; i < flat.pixels.size(); ++i)
    flat.pixels[i] = static_cast<std::uint8_t>(200 + i % 3);
  for (auto [w, h] : {std::pair<std::int64_t, std::int64_t>{96, 48}, {5, 3}, {37, 240}, {1, 1}}) {
    const RgbImage out = resize_bicubic(flat, w, h);
    ASSERT_EQ(out.pixels.size(), static_cast<std::size_t>(w * h * 3));
    for (std::size_t i = 0; i < out.pixels.size(); ++i)
      ASSERT_EQ(out.pixels[i], 200 + i % 3) << w << "x" << h;
  }
}

TEST(ImageProcessor, RefusedFilesAreOneLineErrorsNamingThem) {
  const auto refused = [](const std::string& path, const std::string& what) {
    const std::string e = error_of([&] { read_image_file(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find(what), std::string::npos) << e;
  };
  refused(kDir + "refused_cmyk.jpg", "CMYK JPEG is not supported");
  refused(kDir + "refused_gray16.png", "16-bit grayscale PNG is not supported");
  refused(kDir + "no_such_image.png", "cannot open image");
  refused(kDir + "cases.json", "not a JPEG or PNG image");

  for (const char* file : {"chelsea_420.jpg", "astronaut_rgba.png", "coffee_444_progressive.jpg"}) {
    const std::vector<std::uint8_t> bytes = file_bytes(kDir + file);
    for (std::size_t keep : {bytes.size() / 2, std::size_t{40}, std::size_t{4}}) {
      const std::string e =
          error_of([&] { decode_image(std::span(bytes).first(keep), std::string("cut_") + file); });
      EXPECT_NE(e.find(std::string("cut_") + file), std::string::npos)
          << file << " cut at " << keep << ": " << e;
      EXPECT_EQ(e.find('\n'), std::string::npos);
    }
  }
  // A corrupted byte in the middle of a PNG breaks its checksum.
  std::vector<std::uint8_t> png = file_bytes(kDir + "astronaut_rgba.png");
  png[png.size() / 2] ^= 0x5a;
  EXPECT_NE(error_of([&] { decode_image(png, "bad.png"); }).find("bad.png: corrupt PNG"), std::string::npos);
}

TEST(ImageProcessor, ExifOrientationTurnsTheImageUpright) {
  // 3x2 image, pixel value = its index; orientation 6 (turned 90 degrees clockwise) gives 2x3.
  RgbImage image{3, 2, {}};
  for (int i = 0; i < 6; ++i) image.pixels.insert(image.pixels.end(), {std::uint8_t(i), 0, 0});
  const RgbImage turned = apply_orientation(image, 6);
  ASSERT_EQ(turned.width, 2);
  ASSERT_EQ(turned.height, 3);
  // The upright image's top row is the stored image's left column, read bottom to top.
  EXPECT_EQ(turned.pixels[0], 3);
  EXPECT_EQ(turned.pixels[3], 0);
  for (int o = 1; o <= 8; ++o) {  // every orientation is a permutation of the pixels
    const RgbImage t = apply_orientation(image, o);
    std::vector<int> seen(6, 0);
    for (std::size_t i = 0; i < t.pixels.size(); i += 3) ++seen[t.pixels[i]];
    EXPECT_EQ(seen, std::vector<int>(6, 1)) << o;
  }
  const std::uint8_t big_endian[] = {'E',  'x',  'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
                                     0x01, 0x12, 0,   3,   0, 0, 0,   1,   0, 8,  0, 0, 0, 0, 0, 0};
  EXPECT_EQ(exif_orientation(big_endian), 8);
  EXPECT_EQ(exif_orientation(std::span(big_endian).first(20)), 1);  // cut inside the entry
}

TEST(ImageProcessor, ConfigIsChecked) {
  const auto error = [](const char* json) {
    return error_of([&] { parse_image_processor_config(Json::parse(json), "processor_config.json"); });
  };
  EXPECT_NE(error(R"({"image_processor": {"max_soft_tokens": 100}})").find("must be one of 70, 140"),
            std::string::npos);
  EXPECT_NE(error(R"({"resample": 2})").find("only 3 (bicubic)"), std::string::npos);
  EXPECT_NE(error(R"({"image_std": [1, 0, 1]})").find("must not be 0"), std::string::npos);
  EXPECT_NE(error(R"({"patch_size": -4})").find("patch_size"), std::string::npos);
  const ImageProcessorConfig c = parse_image_processor_config(
      Json::parse(R"({"image_processor": {"max_soft_tokens": 560, "patch_size": 14, "image_mean": 0.5}})"),
      "x");
  EXPECT_EQ(c.max_soft_tokens, 560);
  EXPECT_EQ(c.patch_size, 14);
  EXPECT_EQ(c.image_mean[2], 0.5);
}

}  // namespace
}  // namespace g4
