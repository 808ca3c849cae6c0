// cmd_bench.cpp: `g4moe bench forward --model DIR [--batch B] [--seq S] [--repeat N] [--warmup W]`:
// times the CPU forward on random token ids (seeded) and prints one JSON line with tokens/s. A benchmark,
// not a test: nothing is asserted.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>

#include <omp.h>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/profile.h"
#include "model/gemma4_model.h"

namespace g4::cli {

namespace {

struct BenchOptions {
  std::string model;
  std::int64_t batch = 1, seq = 512;
  int repeat = 5, warmup = 1;
};

int run_bench_forward(const BenchOptions& o) {
  check(o.batch > 0 && o.seq > 0 && o.repeat > 0 && o.warmup >= 0,
        "--batch, --seq, --repeat must be positive");
  const Gemma4Model model = load_gemma4_model(o.model);
  Batch batch;
  batch.batch_size = o.batch;
  batch.seq_len = o.seq;
  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<std::int64_t> token(0, model.config.text.vocab_size - 1);
  for (std::int64_t i = 0; i < batch.tokens(); ++i) {
    batch.input_ids.push_back(token(rng));
    batch.position_ids.push_back(i % o.seq);
  }
  batch.labels = batch.input_ids;
  for (int i = 0; i < o.warmup; ++i) gemma4_forward(model, batch);
  std::vector<double> seconds;
  for (int i = 0; i < o.repeat; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const ForwardResult r = gemma4_forward(model, batch);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  Json line = {{"what", "g4moe cpu forward"},
               {"batch", o.batch},
               {"seq", o.seq},
               {"threads", omp_get_max_threads()},
               {"median_s", median},
               {"min_s", seconds.front()},
               {"tokens_per_s", static_cast<double>(batch.tokens()) / median}};
  std::printf("%s\n", line.dump().c_str());
  print_profile();
  return 0;
}

}  // namespace

Action register_bench(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("bench", "Benchmarks (not tests): time parts of g4moe and print JSON lines.");
  cmd->require_subcommand(1);
  auto* fwd = cmd->add_subcommand("forward",
                                  "Time the CPU forward pass on random token ids (median of --repeat runs).");
  auto o = std::make_shared<BenchOptions>();
  fwd->add_option("--model", o->model, "checkpoint directory")->required();
  fwd->add_option("--batch", o->batch, "rows per batch")->capture_default_str();
  fwd->add_option("--seq", o->seq, "tokens per row")->capture_default_str();
  fwd->add_option("--repeat", o->repeat, "timed runs")->capture_default_str();
  fwd->add_option("--warmup", o->warmup, "untimed runs first")->capture_default_str();
  return [o] { return run_bench_forward(*o); };
}

}  // namespace g4::cli
