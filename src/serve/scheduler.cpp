#include "serve/scheduler.h"

#include <chrono>
#include <cstdio>

namespace g4 {

namespace {

void end_with_error(Ticket& ticket, const std::string& error) {
  std::lock_guard lock(ticket.mutex);
  if (ticket.finished) return;
  ticket.error = error;
  ticket.finished = FinishReason::cancelled;
  ticket.changed.notify_all();
}

}  // namespace

void Ticket::wait_for_more(std::size_t seen, int timeout_ms) {
  std::unique_lock lock(mutex);
  changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                   [&] { return tokens.size() > seen || finished.has_value(); });
}

Scheduler::Scheduler(GenerationEngine& engine, std::size_t queue_limit)
    : engine_(engine), queue_limit_(queue_limit), worker_([this] { run(); }) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

std::size_t Scheduler::waiting() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

std::shared_ptr<Ticket> Scheduler::submit(std::vector<std::int64_t> prompt, GenerationParams params) {
  auto ticket = std::make_shared<Ticket>();
  GenerationRequest request;
  request.prompt = std::move(prompt);
  request.params = std::move(params);
  request.on_token = [ticket](std::int64_t token) {
    std::lock_guard lock(ticket->mutex);
    ticket->tokens.push_back(token);
    ticket->changed.notify_all();
    return !ticket->cancel;
  };
  request.on_finish = [this, ticket](FinishReason reason) {  // on the worker, outside mutex_
    {
      std::lock_guard lock(mutex_);
      std::erase(running_, ticket);
    }
    std::lock_guard lock(ticket->mutex);
    ticket->finished = reason;
    ticket->changed.notify_all();
  };
  {
    std::lock_guard lock(mutex_);
    if (!failure_.empty()) {
      end_with_error(*ticket, failure_);
      return ticket;
    }
    if (queue_.size() >= queue_limit_) return nullptr;
    queue_.emplace_back(std::move(request), ticket);
  }
  wake_.notify_all();
  return ticket;
}

void Scheduler::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      while (!queue_.empty() && engine_.free_slots() > 0) {
        auto [request, ticket] = std::move(queue_.front());
        queue_.pop_front();
        bool cancelled = false;
        {
          std::lock_guard ticket_lock(ticket->mutex);
          cancelled = ticket->cancel;
        }
        try {
          if (cancelled) fail("cancelled before it started");
          running_.push_back(ticket);
          engine_.start(std::move(request));
        } catch (const Error& e) {
          running_.pop_back();
          end_with_error(*ticket, e.what());
        }
      }
      if (stopping_) {
        for (auto& [request, ticket] : queue_) end_with_error(*ticket, "the server is shutting down");
        queue_.clear();
      }
    }
    bool worked = false;
    try {
      worked = engine_.step();
    } catch (const Error& e) {
      // A failed step (a device error, memory) leaves the engine's state unknown: every request fails, and
      // later ones are refused with the reason; the server itself keeps answering.
      std::unique_lock lock(mutex_);
      failure_ = std::string("the generation engine failed: ") + e.what();
      std::fprintf(stderr, "g4moe: error: %s\n", failure_.c_str());
      for (auto& ticket : running_) end_with_error(*ticket, failure_);
      for (auto& [request, ticket] : queue_) end_with_error(*ticket, failure_);
      running_.clear();
      queue_.clear();
      wake_.wait(lock, [&] { return stopping_; });
      return;
    }
    if (worked) continue;
    std::unique_lock lock(mutex_);
    if (stopping_ && queue_.empty()) return;
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
  }
}

}  // namespace g4
