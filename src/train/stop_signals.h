// stop_signals.h: the signals that ask `g4moe train` to stop after the current step, save, and exit 130.
//
// One process: SIGINT (Ctrl-C) and SIGTERM (what Slurm and Kubernetes send before they kill a job). Under
// mpirun also SIGUSR1, because Ctrl-C never reaches the ranks: OpenMPI 4.1's mpirun answers SIGINT by sending
// every rank SIGCONT, then SIGTERM odls_base_sigkill_timeout seconds later (default 1), then SIGKILL as long
// again after that, and exits 1 whatever the ranks return. SIGUSR1 is forwarded to the ranks as it is (mpirun
// keeps running and exits with their 130). The ranks agree on the stop step through a collective (any_rank),
// so a signal that reaches them at different times still stops them all after the same step.
//
// Invariant: while a StopSignals lives, those signals only set a flag (async-signal-safe); its destructor
// restores the handlers it replaced (under mpirun, SIGTERM's is dist's "terminated by the launcher" exit 2).
#pragma once

namespace g4 {

class StopSignals {
 public:
  explicit StopSignals(bool under_mpirun);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  bool requested() const;
  const char* signal_name() const;  // of the last stop signal received ("SIGINT", ...), "" if none
};

}  // namespace g4
