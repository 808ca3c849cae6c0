// loss.png: a valid PNG of the promised size that cairo reads back, with something drawn on it; written
// atomically (a bad directory gives a g4::Error naming the path and leaves no file); non-finite points, one
// point, all-equal values and empty series never break it.
#include "train/loss_plot.h"

#include <cairo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <numbers>
#include <string>

#include "core/error.h"
#include "test_paths.h"

namespace g4 {
namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::uint32_t be32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

// Width and height from the IHDR chunk, after checking the signature and that IHDR comes first.
std::pair<std::uint32_t, std::uint32_t> png_size(const std::string& png) {
  EXPECT_GE(png.size(), 33u);
  if (png.size() < 33) return {0, 0};
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(be32(png, 8), 13u);  // IHDR length
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  return {be32(png, 16), be32(png, 20)};
}

// Reads the PNG back with cairo; counts its pixels that are not white (-1 if cairo cannot read it).
long non_white_pixels(const std::string& path, int* width = nullptr, int* height = nullptr) {
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    return -1;
  }
  const int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  const int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  long count = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      std::uint32_t px;
      std::memcpy(&px, data + y * stride + x * 4, 4);
      if ((px & 0xffffff) != 0xffffff) ++count;
    }
  cairo_surface_destroy(s);
  if (width) *width = w;
  if (height) *height = h;
  return count;
}

LossCurves sample_curves() {
  LossCurves c;
  for (int step = 1; step <= 200; ++step) {
    const double lr =
        step < 20 ? 3e-4 * step / 20 : 3e-4 * 0.5 * (1 + std::cos(std::numbers::pi * (step - 20) / 180.0));
    c.train.emplace_back(step, 2.0 + 8.0 * std::exp(-step / 40.0) + 0.2 * std::sin(step * 0.7));
    c.lr.emplace_back(step, lr);
    if (step % 25 == 0) c.eval.emplace_back(step, 2.3 + 8.0 * std::exp(-step / 40.0));
  }
  return c;
}

TEST(LossPlot, WritesAPngThatCairoReadsBack) {
  const std::string path = test::scratch_dir("loss_plot") + "/loss.png";
  write_loss_plot(path, sample_curves());
  const std::string png = read_bytes(path);
  const auto [w, h] = png_size(png);
  EXPECT_EQ(w, 960u);
  EXPECT_EQ(h, 600u);
  int rw = 0, rh = 0;
  const long drawn = non_white_pixels(path, &rw, &rh);
  ASSERT_GE(drawn, 0) << "cairo could not read " << path;
  EXPECT_EQ(rw, 960);
  EXPECT_EQ(rh, 600);
  EXPECT_GT(drawn, 2000);  // axes, text and three curves
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(LossPlot, ABadDirectoryThrowsNamingThePathAndLeavesNoFile) {
  const std::string dir = test::scratch_dir("loss_plot_bad") + "/missing";
  const std::string path = dir + "/loss.png";
  try {
    write_loss_plot(path, sample_curves());
    FAIL() << "no error for " << path;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(LossPlot, NonFiniteOnePointEqualAndEmptySeriesStillPlot) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::string dir = test::scratch_dir("loss_plot_odd");
  std::vector<LossCurves> cases;
  LossCurves c = sample_curves();
  c.train[10].second = nan;
  c.train[11].first = nan;
  c.train[50].second = inf;
  c.eval[2].second = -inf;
  c.lr[3].second = nan;
  c.train.emplace_back(nan, nan);
  cases.push_back(c);
  cases.push_back({{{5, 2.5}}, {}, {}});                                                 // one point
  cases.push_back({{{1, 3}, {2, 3}, {3, 3}}, {{2, 3}}, {{1, 1e-4}, {3, 1e-4}}});         // all equal
  cases.push_back({});                                                                   // nothing
  cases.push_back({{{nan, nan}, {inf, 1}}, {{1, nan}}, {{2, inf}}});                     // nothing plottable
  cases.push_back({{{0, 1e-320}, {1, 1e299}, {2, -1e299}}, {}, {{0, 1e-310}, {1, 0}}});  // extremes
  cases.push_back({{}, {}, {{0, 0}, {10, 1e-3}, {20, 0}}});                              // lr only
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string path = dir + "/case" + std::to_string(i) + ".png";
    ASSERT_NO_THROW(write_loss_plot(path, cases[i])) << "case " << i;
    const auto [w, h] = png_size(read_bytes(path));
    EXPECT_EQ(w, 960u) << "case " << i;
    EXPECT_EQ(h, 600u) << "case " << i;
    EXPECT_GT(non_white_pixels(path), 500) << "case " << i;  // at least the frame and tick labels
  }
}

}  // namespace
}  // namespace g4
