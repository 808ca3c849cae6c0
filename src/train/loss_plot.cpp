#include "train/loss_plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "io/json.h"

namespace g4 {

namespace {

constexpr int kWidth = 640, kHeight = 400, kMargin = 40;

std::uint32_t crc32(const std::string& bytes) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t n = 0; n < 256; ++n) {
      std::uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xffffffffu;
  for (unsigned char b : bytes) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

void put32(std::string& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void chunk(std::string& png, const char* type, const std::string& data) {
  put32(png, static_cast<std::uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  png += body;
  put32(png, crc32(body));
}

// zlib stream of stored (uncompressed) deflate blocks.
std::string zlib_stored(const std::string& raw) {
  std::string z = "\x78\x01";
  std::uint32_t a = 1, b = 0;
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  for (std::size_t pos = 0; pos < raw.size() || pos == 0;) {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + n >= raw.size();
    z.push_back(static_cast<char>(last ? 1 : 0));
    z.push_back(static_cast<char>(n & 0xff));
    z.push_back(static_cast<char>(n >> 8));
    z.push_back(static_cast<char>(~n & 0xff));
    z.push_back(static_cast<char>((~n >> 8) & 0xff));
    z += raw.substr(pos, n);
    pos += n;
    if (last) break;
  }
  put32(z, (b << 16) | a);
  return z;
}

}  // namespace

void write_loss_plot(const std::string& path, const std::vector<std::pair<double, double>>& train,
                     const std::vector<std::pair<double, double>>& eval) {
  std::vector<std::array<std::uint8_t, 3>> px(static_cast<std::size_t>(kWidth * kHeight), {255, 255, 255});
  auto set = [&](int x, int y, std::array<std::uint8_t, 3> c) {
    if (x >= 0 && x < kWidth && y >= 0 && y < kHeight) px[static_cast<std::size_t>(y * kWidth + x)] = c;
  };
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto* series : {&train, &eval})
    for (const auto& [x, y] : *series) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (!(x1 > x0)) x1 = x0 + 1;
  if (!(y1 > y0)) y1 = y0 + 1;
  auto to_px = [&](double x, double y) {
    return std::pair<int, int>{
        kMargin + static_cast<int>((x - x0) / (x1 - x0) * (kWidth - 2 * kMargin)),
        kHeight - kMargin - static_cast<int>((y - y0) / (y1 - y0) * (kHeight - 2 * kMargin))};
  };
  for (int x = kMargin; x < kWidth - kMargin; ++x) set(x, kHeight - kMargin, {0, 0, 0});  // axes
  for (int y = kMargin; y < kHeight - kMargin; ++y) set(kMargin, y, {0, 0, 0});
  auto draw = [&](const std::vector<std::pair<double, double>>& s, std::array<std::uint8_t, 3> color) {
    for (std::size_t i = 1; i < s.size(); ++i) {
      auto [ax, ay] = to_px(s[i - 1].first, s[i - 1].second);
      auto [bx, by] = to_px(s[i].first, s[i].second);
      const int n = std::max({std::abs(bx - ax), std::abs(by - ay), 1});
      for (int k = 0; k <= n; ++k)
        for (int t = 0; t < 2; ++t) set(ax + (bx - ax) * k / n, ay + (by - ay) * k / n + t, color);
    }
  };
  draw(train, {31, 119, 180});
  draw(eval, {214, 39, 40});
  std::string raw;
  for (int y = 0; y < kHeight; ++y) {
    raw.push_back(0);  // filter: none
    for (int x = 0; x < kWidth; ++x)
      for (std::uint8_t c : px[static_cast<std::size_t>(y * kWidth + x)]) raw.push_back(static_cast<char>(c));
  }
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put32(ihdr, kWidth);
  put32(ihdr, kHeight);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", zlib_stored(raw));
  chunk(png, "IEND", "");
  write_text_file_atomic(path, png);
}

}  // namespace g4
