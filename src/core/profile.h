// profile.h: opt-in wall-clock accounting by phase (set G4_PROFILE=1): ScopedPhase adds its lifetime to a
// named bucket; print_profile() writes the buckets to stderr. Off by default: one branch per scope.
#pragma once

#include <chrono>
#include <string>

namespace g4 {

bool profiling_enabled();
void profile_add(const char* phase, double seconds);
void print_profile();

class ScopedPhase {
 public:
  explicit ScopedPhase(const char* phase) : phase_(profiling_enabled() ? phase : nullptr) {
    if (phase_) start_ = std::chrono::steady_clock::now();
  }
  ~ScopedPhase() {
    if (phase_)
      profile_add(phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  const char* phase_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace g4
