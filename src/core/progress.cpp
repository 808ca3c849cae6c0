#include "core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace g4 {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  return buf;
}

ProgressBar::ProgressBar(std::string label, std::int64_t total, double min_interval_s)
    : label_(std::move(label)),
      total_(total),
      min_interval_s_(min_interval_s),
      tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_ - std::chrono::hours(1)) {}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(std::int64_t done, const std::string& figures) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const bool last = done >= total_;
  if (!tty_ && !last && std::chrono::duration<double>(now - last_print_).count() < min_interval_s_) return;
  last_print_ = now;
  const double rate = (done - first_) / std::max(elapsed, 1e-9);
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : NAN;
  const int width = 24;
  const int filled =
      total_ > 0 ? static_cast<int>(width * std::min<std::int64_t>(done, total_) / total_) : width;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %s | %s elapsed, ETA %s%s", tty_ ? "\r\033[K" : "",
               label_.c_str(), bar.c_str(), static_cast<long long>(done), static_cast<long long>(total_),
               figures.c_str(), format_duration(elapsed).c_str(), format_duration(eta).c_str(),
               tty_ ? "" : "\n");
  std::fflush(stderr);
  shown_ = tty_;
}

void ProgressBar::finish() {
  if (shown_) std::fprintf(stderr, "\n");
  shown_ = false;
}

}  // namespace g4
