#include "train/loss_plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numbers>

#include "core/error.h"
#include "io/json.h"

namespace g4 {

namespace {

constexpr int kWidth = 960, kHeight = 600;
constexpr double kFontSize = 13;
constexpr double kLimit = 1e300;  // larger magnitudes are skipped, so that spans and paddings stay finite

using Series = std::vector<std::pair<double, double>>;

struct Rgb {
  double r, g, b;
};
constexpr Rgb kTrainColor{0.122, 0.467, 0.706}, kEvalColor{0.839, 0.153, 0.157},
    kLrColor{0.173, 0.627, 0.173};

bool plottable(double v) {
  return std::isfinite(v) && std::fabs(v) <= kLimit;
}
bool plottable(const std::pair<double, double>& p) {
  return plottable(p.first) && plottable(p.second);
}

// An axis: its limits (the data's, plus a margin) and the ticks inside them (round numbers: 1, 2 or 5 times
// a power of ten).
struct Axis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;
  double step = 0;  // 0: ticks are just the limits (a range that round numbers cannot divide)
};

// The axis for data in [lo, hi] (lo > hi: no data) with about `target` ticks, no finer than `min_step`.
Axis nice_axis(double lo, double hi, int target, double min_step) {
  Axis a;
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (hi - lo <= std::fabs(lo) * 1e-12) {  // one value: pad it
    double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    pad = std::max(pad, min_step);
    lo -= pad, hi += pad;
  }
  const double margin = (hi - lo) * 0.04;  // keeps lines and markers off the frame
  a.lo = lo - margin, a.hi = hi + margin;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  step = std::max(step, min_step);
  const double k0 = std::ceil(a.lo / step - 1e-9), k1 = std::floor(a.hi / step + 1e-9);
  if (!(step > 0) || !std::isfinite(step) || !std::isfinite(k0 * step) || !std::isfinite(k1 * step) ||
      k1 - k0 > 100 || k1 < k0) {
    a.ticks = {a.lo, a.hi};
    return a;
  }
  a.step = step;
  for (double k = k0; k <= k1; ++k) {
    const double v = k * step;
    a.ticks.push_back(std::fabs(v) < step * 1e-6 ? 0.0 : v);
  }
  return a;
}

// Data limits of some series along one coordinate (first: x, second: y); lo > hi when there is no point.
template <class Get>
std::pair<double, double> extent(std::initializer_list<const Series*> series, Get get) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series* s : series)
    for (const auto& p : *s)
      if (plottable(p)) lo = std::min(lo, get(p)), hi = std::max(hi, get(p));
  return {lo, hi};
}

int exponent(double v) {
  return static_cast<int>(std::floor(std::log10(std::fabs(v)) + 1e-9));
}

// "2.5e-04" -> "2.5e-4", "1.0e+00" -> "1.0e0".
std::string scientific(double v, int digits) {
  if (v == 0) return "0";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", digits, v);
  std::string s = buf;
  const auto e = s.find('e');
  if (e == std::string::npos) return s;
  std::string exp = s.substr(e + 1);
  const bool negative = !exp.empty() && exp[0] == '-';
  if (!exp.empty() && (exp[0] == '-' || exp[0] == '+')) exp.erase(0, 1);
  exp.erase(0, std::min(exp.find_first_not_of('0'), exp.size() - 1));
  return s.substr(0, e) + "e" + (negative ? "-" : "") + exp;
}

// Tick labels with the same number of digits throughout, fixed-point unless the numbers are very large or
// small (or `sci`).
std::vector<std::string> tick_labels(const Axis& a, bool sci) {
  std::vector<std::string> out;
  double biggest = 0;
  for (double t : a.ticks) biggest = std::max(biggest, std::fabs(t));
  const double step = a.step > 0 ? a.step : a.hi - a.lo;
  if (!(step > 0)) return std::vector<std::string>(a.ticks.size(), "");
  if (!sci && (biggest >= 1e7 || step < 1e-5)) sci = true;
  if (sci) {
    int digits = 0;
    for (double t : a.ticks)
      if (t != 0) digits = std::max(digits, exponent(t) - exponent(step));
    digits = std::clamp(digits, 0, 6);
    for (double t : a.ticks) out.push_back(scientific(t, digits));
  } else {
    const int decimals = std::clamp(-exponent(step), 0, 10);
    char buf[64];
    for (double t : a.ticks) {
      std::snprintf(buf, sizeof buf, "%.*f", decimals, t);
      out.push_back(buf);
    }
  }
  return out;
}

// Maps [lo, hi] onto the pixels [p0, p1].
struct Scale {
  double lo, hi, p0, p1;
  double operator()(double v) const { return p0 + (v - lo) / (hi - lo) * (p1 - p0); }
};

enum class Align { kLeft, kCenter, kRight };

// Text with its left, centre or right at x and its middle (by the font's ascent) at y.
void text(cairo_t* cr, const std::string& s, double x, double y, Align align, double angle = 0) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s.c_str(), &te);
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  const double dx = align == Align::kLeft ? 0 : align == Align::kCenter ? te.x_advance / 2 : te.x_advance;
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, angle);
  cairo_move_to(cr, -dx, fe.ascent * 0.35);
  cairo_show_text(cr, s.c_str());
  cairo_restore(cr);
}

double text_width(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s.c_str(), &te);
  return te.x_advance;
}

enum class Style { kLine, kLineMarkers, kDashed };

void set_style(cairo_t* cr, Style style, Rgb c) {
  cairo_set_source_rgb(cr, c.r, c.g, c.b);
  cairo_set_line_width(cr, style == Style::kDashed ? 1.2 : 1.8);
  const double dashes[] = {6, 4};
  cairo_set_dash(cr, dashes, style == Style::kDashed ? 2 : 0, 0);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
}

void marker(cairo_t* cr, double x, double y) {
  cairo_new_sub_path(cr);
  cairo_arc(cr, x, y, 3.2, 0, 2 * std::numbers::pi);
  cairo_fill(cr);
}

// One series as a polyline that breaks at unplottable points; a point without neighbours becomes a dot.
void draw_series(cairo_t* cr, const Series& s, const Scale& sx, const Scale& sy, Style style, Rgb c) {
  set_style(cr, style, c);
  std::vector<std::pair<double, double>> run;
  auto flush = [&] {
    if (run.size() == 1) {
      cairo_new_path(cr);
      marker(cr, run[0].first, run[0].second);
    } else if (run.size() > 1) {
      cairo_new_path(cr);
      cairo_move_to(cr, run[0].first, run[0].second);
      for (std::size_t i = 1; i < run.size(); ++i) cairo_line_to(cr, run[i].first, run[i].second);
      cairo_stroke(cr);
    }
    run.clear();
  };
  for (const auto& p : s) {
    const double x = sx(p.first), y = sy(p.second);
    if (!plottable(p) || !std::isfinite(x) || !std::isfinite(y)) {
      flush();
      continue;
    }
    run.emplace_back(x, y);
  }
  flush();
  if (style == Style::kLineMarkers)
    for (const auto& p : s) {
      const double x = sx(p.first), y = sy(p.second);
      if (plottable(p) && std::isfinite(x) && std::isfinite(y)) marker(cr, x, y);
    }
}

// The legend's sample of a style: a short line (with a marker in its middle for kLineMarkers).
void legend_sample(cairo_t* cr, double x, double y, double w, Style style, Rgb c) {
  set_style(cr, style, c);
  cairo_new_path(cr);
  cairo_move_to(cr, x, y);
  cairo_line_to(cr, x + w, y);
  cairo_stroke(cr);
  if (style == Style::kLineMarkers) marker(cr, x + w / 2, y);
}

cairo_status_t append_to_string(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

struct SurfaceFree {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextFree {
  void operator()(cairo_t* cr) const { cairo_destroy(cr); }
};

}  // namespace

void write_loss_plot(const std::string& path, const LossCurves& curves) {
  const auto first = [](const std::pair<double, double>& p) { return p.first; };
  const auto second = [](const std::pair<double, double>& p) { return p.second; };
  const bool has_train =
      std::any_of(curves.train.begin(), curves.train.end(), [](auto& p) { return plottable(p); });
  const bool has_eval =
      std::any_of(curves.eval.begin(), curves.eval.end(), [](auto& p) { return plottable(p); });
  const bool has_lr = std::any_of(curves.lr.begin(), curves.lr.end(), [](auto& p) { return plottable(p); });

  // Axes. Steps are whole numbers in practice: no tick finer than 1 then.
  const auto [x0, x1] = extent({&curves.train, &curves.eval, &curves.lr}, first);
  bool whole = true;
  for (const Series* s : {&curves.train, &curves.eval, &curves.lr})
    for (const auto& p : *s)
      if (plottable(p) && p.first != std::floor(p.first)) whole = false;
  const Axis ax = nice_axis(x0, x1, 8, whole ? 1.0 : 0.0);
  const auto [y0, y1] = extent({&curves.train, &curves.eval}, second);
  const Axis ay = nice_axis(y0, y1, 6, 0);
  auto [r0, r1] = extent({&curves.lr}, second);
  if (has_lr && r0 >= 0) r0 = 0;  // a learning rate is read against zero
  const Axis ar = nice_axis(r0, r1, 6, 0);

  std::unique_ptr<cairo_surface_t, SurfaceFree> surface(
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, kWidth, kHeight));
  std::unique_ptr<cairo_t, ContextFree> context(cairo_create(surface.get()));
  cairo_t* cr = context.get();
  check(cairo_status(cr) == CAIRO_STATUS_SUCCESS, "cannot draw ", path, ": ",
        cairo_status_to_string(cairo_status(cr)));

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, kFontSize);

  const double left = 84, top = 48, right = kWidth - (has_lr ? 96 : 28), bottom = kHeight - 62;
  const Scale sx{ax.lo, ax.hi, left, right}, sy{ay.lo, ay.hi, bottom, top}, sr{ar.lo, ar.hi, bottom, top};
  const auto crisp = [](double v) { return std::round(v) + 0.5; };  // 1-pixel lines on pixel centres

  // Grid (x and loss ticks), frame, tick marks and labels.
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
  for (double t : ax.ticks) {
    cairo_move_to(cr, crisp(sx(t)), top);
    cairo_line_to(cr, crisp(sx(t)), bottom);
  }
  for (double t : ay.ticks) {
    cairo_move_to(cr, left, crisp(sy(t)));
    cairo_line_to(cr, right, crisp(sy(t)));
  }
  cairo_stroke(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, crisp(left), crisp(top), std::round(right) - std::round(left),
                  std::round(bottom) - std::round(top));
  for (double t : ax.ticks) {
    cairo_move_to(cr, crisp(sx(t)), crisp(bottom));
    cairo_line_to(cr, crisp(sx(t)), crisp(bottom) + 5);
  }
  for (double t : ay.ticks) {
    cairo_move_to(cr, crisp(left), crisp(sy(t)));
    cairo_line_to(cr, crisp(left) - 5, crisp(sy(t)));
  }
  if (has_lr)
    for (double t : ar.ticks) {
      cairo_move_to(cr, crisp(right), crisp(sr(t)));
      cairo_line_to(cr, crisp(right) + 5, crisp(sr(t)));
    }
  cairo_stroke(cr);

  const auto xl = tick_labels(ax, false), yl = tick_labels(ay, false), rl = tick_labels(ar, true);
  for (std::size_t i = 0; i < ax.ticks.size(); ++i)
    text(cr, xl[i], sx(ax.ticks[i]), bottom + 18, Align::kCenter);
  for (std::size_t i = 0; i < ay.ticks.size(); ++i) text(cr, yl[i], left - 9, sy(ay.ticks[i]), Align::kRight);
  if (has_lr)
    for (std::size_t i = 0; i < ar.ticks.size(); ++i)
      text(cr, rl[i], right + 9, sr(ar.ticks[i]), Align::kLeft);
  text(cr, "step", (left + right) / 2, kHeight - 18, Align::kCenter);
  text(cr, "loss", 20, (top + bottom) / 2, Align::kCenter, -std::numbers::pi / 2);
  if (has_lr)
    text(cr, "learning rate", kWidth - 16, (top + bottom) / 2, Align::kCenter, -std::numbers::pi / 2);

  // Series, clipped to the plot area (the axes' margins keep them off its edges).
  cairo_save(cr);
  cairo_rectangle(cr, left, top, right - left, bottom - top);
  cairo_clip(cr);
  if (has_lr) draw_series(cr, curves.lr, sx, sr, Style::kDashed, kLrColor);
  draw_series(cr, curves.train, sx, sy, Style::kLine, kTrainColor);
  draw_series(cr, curves.eval, sx, sy, Style::kLineMarkers, kEvalColor);
  cairo_restore(cr);

  // Legend: one row above the plot area, centred on it.
  struct Entry {
    const char* label;
    Style style;
    Rgb color;
  };
  std::vector<Entry> entries;
  if (has_train) entries.push_back({"train loss", Style::kLine, kTrainColor});
  if (has_eval) entries.push_back({"eval loss", Style::kLineMarkers, kEvalColor});
  if (has_lr) entries.push_back({"learning rate", Style::kDashed, kLrColor});
  constexpr double kSample = 28, kGap = 6, kSpacing = 24;
  double total = 0;
  for (const Entry& e : entries) total += kSample + kGap + text_width(cr, e.label) + kSpacing;
  double x = (left + right) / 2 - (total - kSpacing) / 2;
  const double y = top / 2;
  for (const Entry& e : entries) {
    legend_sample(cr, x, y, kSample, e.style, e.color);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, e.label, x + kSample + kGap, y, Align::kLeft);
    x += kSample + kGap + text_width(cr, e.label) + kSpacing;
  }

  cairo_surface_flush(surface.get());
  check(cairo_status(cr) == CAIRO_STATUS_SUCCESS, "cannot draw ", path, ": ",
        cairo_status_to_string(cairo_status(cr)));
  std::string png;
  const cairo_status_t written = cairo_surface_write_to_png_stream(surface.get(), append_to_string, &png);
  check(written == CAIRO_STATUS_SUCCESS, "cannot encode ", path, ": ", cairo_status_to_string(written));
  write_text_file_atomic(path, png);
}

}  // namespace g4
