#include "core/profile.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

namespace g4 {

namespace {
std::mutex mutex;
std::map<std::string, double>& buckets() {
  static std::map<std::string, double> b;
  return b;
}
}  // namespace

bool profiling_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("G4_PROFILE");
    return v && v[0] && v[0] != '0';
  }();
  return enabled;
}

void profile_add(const char* phase, double seconds) {
  std::lock_guard<std::mutex> lock(mutex);
  buckets()[phase] += seconds;
}

void print_profile() {
  if (!profiling_enabled()) return;
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [phase, seconds] : buckets())
    std::fprintf(stderr, "profile: %-24s %10.4f s\n", phase.c_str(), seconds);
}

}  // namespace g4
