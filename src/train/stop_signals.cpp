#include "train/stop_signals.h"

#include <csignal>

namespace g4 {

namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGUSR1};
constexpr int kCount = sizeof kSignals / sizeof kSignals[0];
volatile std::sig_atomic_t g_last_signal = 0;  // 0: no stop requested
struct sigaction g_previous[kCount];
bool g_installed[kCount] = {};

void on_stop_signal(int sig) {
  g_last_signal = sig;
}

}  // namespace

StopSignals::StopSignals(bool under_mpirun) {
  g_last_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking calls (MPI's polling, file writes) carry on; the loop checks the flag
  for (int i = 0; i < kCount; ++i) {
    g_installed[i] = kSignals[i] != SIGUSR1 || under_mpirun;
    if (g_installed[i]) sigaction(kSignals[i], &sa, &g_previous[i]);
  }
}

StopSignals::~StopSignals() {
  for (int i = 0; i < kCount; ++i)
    if (g_installed[i]) sigaction(kSignals[i], &g_previous[i], nullptr);
}

bool StopSignals::requested() const {
  return g_last_signal != 0;
}

const char* StopSignals::signal_name() const {
  switch (g_last_signal) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGUSR1:
      return "SIGUSR1";
    default:
      return "";
  }
}

}  // namespace g4
