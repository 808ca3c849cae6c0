#include "serve/server.h"

#include <httplib.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <random>
#include <thread>

#include "data/openai_api.h"
#include "generate/generation.h"
#include "serve/scheduler.h"

namespace g4 {

namespace {

std::int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The length of the longest prefix of `text` that does not end inside a UTF-8 sequence.
std::size_t complete_utf8_prefix(const std::string& text) {
  std::size_t n = text.size(), back = 0;
  while (back < 4 && back < n && (static_cast<unsigned char>(text[n - 1 - back]) & 0xC0) == 0x80) ++back;
  if (back == n) return n;
  const auto lead = static_cast<unsigned char>(text[n - 1 - back]);
  const std::size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return back + 1 >= want ? n : n - 1 - back;
}

// A request's text as its tokens come: decoded without the stop tokens (and, for chat, without the thought
// channel), cut at the first stop string; `emit()` gives what may be sent now: complete UTF-8, and nothing
// that could still turn out to be the start of a stop string.
class TextTracker {
 public:
  TextTracker(const Tokenizer& tokenizer, const GenerationParams& params, const ApiRequest& request)
      : tokenizer_(tokenizer), params_(params), request_(request) {
    for (const std::string& s : request.stop) hold_ = std::max(hold_, s.size() - 1);
  }

  // Re-reads the tokens; true when a stop string appeared (the generation should end).
  bool update(const std::vector<std::int64_t>& tokens) {
    text_ = tokenizer_.decode(without_stop_tokens(tokens, params_));
    if (request_.chat) text_ = visible_answer(text_);
    std::size_t cut = std::string::npos;
    for (const std::string& s : request_.stop) cut = std::min(cut, text_.find(s));
    if (cut != std::string::npos) {
      text_.resize(cut);
      stopped_ = true;
    }
    return stopped_;
  }

  // The text not sent yet that may be sent (all of it once `final`).
  std::string emit(bool final) {
    std::size_t end = final ? text_.size() : (text_.size() > hold_ ? text_.size() - hold_ : 0);
    end = complete_utf8_prefix(text_.substr(0, end));
    if (end <= sent_ || text_.compare(0, sent_, sent_text_) != 0) return "";
    std::string out = text_.substr(sent_, end - sent_);
    sent_text_ = text_.substr(0, end);
    sent_ = end;
    return out;
  }
  const std::string& text() const { return text_; }
  bool stopped() const { return stopped_; }

 private:
  const Tokenizer& tokenizer_;
  const GenerationParams& params_;
  const ApiRequest& request_;
  std::size_t hold_ = 0, sent_ = 0;
  std::string text_, sent_text_;
  bool stopped_ = false;
};

struct Server {
  GenerationEngine& engine;
  const Tokenizer& tokenizer;
  const GenerationDefaults& defaults;
  const ServerOptions& options;
  Scheduler scheduler;
  std::atomic<std::uint64_t> next_id{0};
  std::int64_t started = unix_time();
};

// JSON text for the wire: invalid UTF-8 in generated text (a model may emit a lone byte-fallback token)
// becomes U+FFFD, as transformers' decode does, instead of an exception.
std::string wire(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void reply_error(httplib::Response& res, int status, const std::string& message, const std::string& type) {
  res.status = status;
  res.set_content(wire(api_error(message, type, status)), "application/json");
}

// The prompt's token ids and the generation parameters of `r`; a g4::Error (400) when they do not fit.
std::pair<std::vector<std::int64_t>, GenerationParams> prepare(const Server& s, const ApiRequest& r) {
  std::vector<std::int64_t> prompt;
  if (r.chat) {
    ChatOptions chat;
    chat.enable_thinking = r.enable_thinking;
    prompt = s.tokenizer.encode(render_chat(r.messages, chat));
  } else if (!r.prompt_ids.empty()) {
    prompt = r.prompt_ids;
  } else {
    prompt = {s.tokenizer.bos};
    const auto body = s.tokenizer.encode(r.prompt_text);
    prompt.insert(prompt.end(), body.begin(), body.end());
  }
  const auto n = static_cast<std::int64_t>(prompt.size());
  const std::int64_t room = s.options.max_context - n;
  check(room >= 1, "the prompt has ", n, " tokens; this server's context is ", s.options.max_context,
        " tokens (prompt and completion)");
  GenerationOverrides o;
  o.max_new_tokens = r.max_tokens.value_or(std::min(s.options.default_max_tokens, room));
  check(o.max_new_tokens <= room, "max_tokens (", o.max_new_tokens, ") + the prompt's ", n,
        " tokens exceed this server's context of ", s.options.max_context, " tokens");
  o.temperature = r.temperature;
  o.top_p = r.top_p;
  o.top_k = r.top_k;
  o.min_p = r.min_p;
  o.repetition_penalty = r.repetition_penalty;
  o.seed = r.seed ? *r.seed : std::random_device{}();  // without a seed every request differs
  o.ignore_eos = r.ignore_eos;
  GenerationParams params = resolve_generation_params(s.defaults, o);
  check_generation_params(params);
  return {std::move(prompt), std::move(params)};
}

// Runs one request to its end (or until `write` fails), calling `on_text` with each piece of new text.
struct Outcome {
  std::string finish_reason, error;
  ApiUsage usage;
};
template <class OnText>
Outcome run_request(Server& s, const ApiRequest& r, const std::vector<std::int64_t>& prompt,
                    const GenerationParams& params, Ticket& ticket, OnText on_text) {
  TextTracker tracker(s.tokenizer, params, r);
  Outcome out;
  out.usage.prompt_tokens = static_cast<std::int64_t>(prompt.size());
  std::size_t seen = 0;
  for (;;) {
    ticket.wait_for_more(seen, 200);
    std::vector<std::int64_t> tokens;
    std::optional<FinishReason> finished;
    {
      std::lock_guard lock(ticket.mutex);
      tokens = ticket.tokens;
      finished = ticket.finished;
      out.error = ticket.error;
    }
    seen = tokens.size();
    out.usage.completion_tokens = static_cast<std::int64_t>(tokens.size());
    if (tracker.update(tokens) && !finished) {
      std::lock_guard lock(ticket.mutex);
      ticket.cancel = true;
    }
    const bool final = finished.has_value();
    if (!out.error.empty()) return out;
    const std::string piece = tracker.emit(final);
    if (!piece.empty() && !on_text(piece)) {
      std::lock_guard lock(ticket.mutex);
      ticket.cancel = true;
      out.error = "the client went away";
      return out;
    }
    if (final) {
      out.finish_reason = *finished == FinishReason::length && !tracker.stopped() ? "length" : "stop";
      return out;
    }
  }
}

void handle_completion(Server& s, const httplib::Request& req, httplib::Response& res, bool chat) {
  ApiRequest r;
  std::vector<std::int64_t> prompt;
  GenerationParams params;
  try {
    const Json body = parse_json_strict(req.body, "request body");
    r = chat ? parse_chat_request(body) : parse_completion_request(body);
    std::tie(prompt, params) = prepare(s, r);
    for (const std::int64_t id : prompt)
      check(id >= 0 && id < s.engine.vocab_size(), "prompt token id ", id,
            " is outside the model's vocabulary of ", s.engine.vocab_size());
  } catch (const Error& e) {
    return reply_error(res, 400, e.what(), "invalid_request_error");
  }
  const std::shared_ptr<Ticket> ticket = s.scheduler.submit(prompt, params);
  if (!ticket)
    return reply_error(res, 503,
                       "the server is busy: " + std::to_string(s.options.queue_limit) +
                           " requests are already waiting; retry later",
                       "server_busy");
  const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(s.next_id++);
  const std::string& model = s.options.model_name;
  const std::int64_t created = unix_time();
  if (!r.stream) {
    std::string text;
    const Outcome out = run_request(s, r, prompt, params, *ticket, [&](const std::string& piece) {
      text += piece;
      return true;
    });
    if (!out.error.empty()) return reply_error(res, 500, out.error, "server_error");
    res.set_content(wire(completion_response(chat, id, model, created, text, out.finish_reason, out.usage)),
                    "application/json");
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [&s, r, prompt, params, ticket, id, model, created, chat](std::size_t, httplib::DataSink& sink) {
        try {
          const auto send = [&sink](const Json& event) {
            const std::string line = "data: " + wire(event) + "\n\n";
            return sink.is_writable() && sink.write(line.data(), line.size());
          };
          bool first = true;
          const Outcome out = run_request(s, r, prompt, params, *ticket, [&](const std::string& piece) {
            const bool ok = send(completion_chunk(chat, id, model, created, piece, std::nullopt, first));
            first = false;
            return ok;
          });
          if (out.error == "the client went away") return false;
          if (!out.error.empty()) {
            send(api_error(out.error, "server_error", 500));
          } else {
            send(completion_chunk(chat, id, model, created, "", out.finish_reason, first));
            if (r.include_usage) send(usage_chunk(chat, id, model, created, out.usage));
          }
          const std::string done = "data: [DONE]\n\n";
          sink.write(done.data(), done.size());
          sink.done();
          return true;
        } catch (const std::exception&) {  // the stream cannot go on: end the generation and the connection
          std::lock_guard lock(ticket->mutex);
          ticket->cancel = true;
          return false;
        }
      },
      [ticket](bool success) {
        if (success) return;
        std::lock_guard lock(ticket->mutex);
        ticket->cancel = true;
      });
}

}  // namespace

int serve(GenerationEngine& engine, const Tokenizer& tokenizer, const GenerationDefaults& defaults,
          const ServerOptions& options) {
  // SIGINT and SIGTERM go to one thread, which stops the server; every other thread (HTTP workers, the
  // scheduler) starts with them blocked.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Server s{engine, tokenizer, defaults, options, Scheduler(engine, options.queue_limit)};
  httplib::Server http;
  http.new_task_queue = [&options] {
    return new httplib::ThreadPool(static_cast<std::size_t>(options.threads));
  };
  http.set_payload_max_length(16u << 20);
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\": \"ok\"}", "application/json");
  });
  http.Get("/v1/models", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(wire(models_response(s.options.model_name, s.started)), "application/json");
  });
  http.Post("/v1/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    handle_completion(s, req, res, false);
  });
  http.Post("/v1/chat/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    handle_completion(s, req, res, true);
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    reply_error(res, 500, "internal error", "server_error");
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string what =
        res.status == 404 ? "no route " + req.path : "HTTP " + std::to_string(res.status);
    reply_error(res, res.status, what, "invalid_request_error");
  });

  const int port = options.port == 0 ? http.bind_to_any_port(options.host)
                                     : (http.bind_to_port(options.host, options.port) ? options.port : -1);
  check(port > 0, "cannot listen on ", options.host, ":", options.port,
        " (in use, or not an address of this machine)");
  std::thread stopper([&http, signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    http.stop();
  });
  std::fprintf(stderr, "g4moe serve: listening on http://%s:%d (model %s, context %lld tokens)\n",
               options.host.c_str(), port, options.model_name.c_str(),
               static_cast<long long>(options.max_context));
  std::fflush(stderr);
  http.listen_after_bind();
  // Stopped by a signal: wake the stopper if it is still waiting (listen failed) and let it go.
  pthread_kill(stopper.native_handle(), SIGTERM);
  stopper.join();
  std::fprintf(stderr, "g4moe serve: stopped\n");
  return 0;
}

}  // namespace g4
