// progress.h: a one-line progress display on stderr for long work: a bar, done/total, caller-supplied
// figures (loss, tokens/s), elapsed time and ETA. On a terminal it redraws in place; otherwise it prints a
// full line at most every `min_interval_s` seconds (and always for the last update), so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace g4 {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::int64_t total, double min_interval_s = 10.0);
  ~ProgressBar();  // ends the line so an error message starts on its own
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // `done` counts from `first` (work resumed at `first` does not distort the ETA).
  void update(std::int64_t done, const std::string& figures);
  void set_first(std::int64_t first) { first_ = first; }
  void finish();

 private:
  std::string label_;
  std::int64_t total_, first_ = 0;
  double min_interval_s_;
  bool tty_, shown_ = false;
  std::chrono::steady_clock::time_point start_, last_print_;
};

std::string format_duration(double seconds);  // "1:02:03" or "2:03"

}  // namespace g4
