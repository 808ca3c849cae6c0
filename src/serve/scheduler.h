// scheduler.h: the bridge between the server's request threads and the GenerationEngine (generate/engine.h),
// which one worker thread owns. Requests wait in a bounded queue until a slot frees; the worker starts them,
// steps the engine while anything runs, and hands each request's tokens to its Ticket, where the request's
// thread waits for them.
//
// Invariants: only the worker touches the engine; submit() never blocks (nullptr when the queue is full: the
// server answers 503); a cancelled ticket's request ends at its next token; the destructor stops the worker
// after the running requests finish, failing every request still waiting. If an engine step fails (a device
// error), every request fails with that reason and later ones are refused with it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "generate/engine.h"

namespace g4 {

struct Ticket {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::int64_t> tokens;      // every token so far
  std::optional<FinishReason> finished;  // set once
  std::string error;                     // the engine refused the request (set with finished)
  bool cancel = false;                   // set by the request's thread: stop generating

  // Waits until more than `seen` tokens are there or the request finished (or `timeout_ms` passed).
  void wait_for_more(std::size_t seen, int timeout_ms);
};

class Scheduler {
 public:
  Scheduler(GenerationEngine& engine, std::size_t queue_limit);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a generation (prompt and params as GenerationRequest takes them; its callbacks are the
  // scheduler's). nullptr when the queue is full.
  std::shared_ptr<Ticket> submit(std::vector<std::int64_t> prompt, GenerationParams params);
  std::size_t waiting() const;

 private:
  void run();

  GenerationEngine& engine_;
  const std::size_t queue_limit_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<GenerationRequest, std::shared_ptr<Ticket>>> queue_;
  std::vector<std::shared_ptr<Ticket>> running_;  // started in the engine, not finished
  std::string failure_;                           // set when an engine step failed: nothing runs any more
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace g4
