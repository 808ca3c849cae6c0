#include "dist/watchdog.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/error.h"

namespace g4 {

double comm_timeout_seconds() {
  const char* env = std::getenv("G4_COMM_TIMEOUT_S");
  if (!env || !*env) return 60.0;
  char* end = nullptr;
  const double s = std::strtod(env, &end);
  check(end && *end == '\0' && s > 0, "G4_COMM_TIMEOUT_S must be a positive number of seconds, got \"", env,
        "\"");
  return s;
}

namespace {

using Clock = std::chrono::steady_clock;

struct Watchdog {
  std::atomic<std::int64_t> armed_at_ns{0};  // 0: nothing blocked
  std::atomic<const char*> what{""};
  std::atomic<int> rank{0};
  double timeout_s = 60.0;

  Watchdog() : timeout_s(comm_timeout_seconds()) {
    std::thread([this] { loop(); }).detach();  // lives as long as the process
  }

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  }

  void loop() {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const std::int64_t t0 = armed_at_ns.load();
      if (t0 == 0 || static_cast<double>(now_ns() - t0) * 1e-9 < timeout_s) continue;
      std::fprintf(stderr,
                   "g4moe: error: rank %d: %s did not complete within %g s (G4_COMM_TIMEOUT_S); another rank "
                   "probably died or stopped\n",
                   rank.load(), what.load(), timeout_s);
      std::fflush(stderr);
      _exit(2);
    }
  }
};

Watchdog& watchdog() {
  static Watchdog* w = new Watchdog;  // never destroyed: its thread runs until exit
  return *w;
}

}  // namespace

WatchdogScope::WatchdogScope(const char* what, int rank) {
  Watchdog& w = watchdog();
  w.what = what;
  w.rank = rank;
  w.armed_at_ns = Watchdog::now_ns();
}

WatchdogScope::~WatchdogScope() {
  watchdog().armed_at_ns = 0;
}

}  // namespace g4
