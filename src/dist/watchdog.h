// watchdog.h: a guard that turns a blocked collective into a clean exit instead of a hang.
//
// A collective arms the watchdog before it blocks and disarms it after. A background thread checks the armed
// collective every 50 ms; once it has been blocked longer than the timeout (G4_COMM_TIMEOUT_S seconds,
// default 60) the process prints `g4moe: error: rank R: <collective> did not complete within N s ...` to
// stderr and exits with code 2 (_exit: no destructor may block on MPI). Invariant: at most one collective is
// armed at a time (collectives of one process run on one thread). The timeout bounds how long a rank may wait
// for its slowest peer inside one collective, so it must exceed the largest load imbalance between ranks
// (raise it for very large models on busy machines).
#pragma once

namespace g4 {

// Seconds from G4_COMM_TIMEOUT_S (a positive number), else 60; a bad value is a g4::Error.
double comm_timeout_seconds();

class WatchdogScope {
 public:
  // `what` must outlive the scope (a string literal); `rank` is the world rank, for the message.
  WatchdogScope(const char* what, int rank);
  ~WatchdogScope();
  WatchdogScope(const WatchdogScope&) = delete;
  WatchdogScope& operator=(const WatchdogScope&) = delete;
};

}  // namespace g4
