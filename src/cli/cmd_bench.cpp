// cmd_bench.cpp: `g4moe bench forward --model DIR [--batch B] [--seq S] [--repeat N] [--warmup W]`:
// times the CPU forward on random token ids (seeded) and prints one JSON line with tokens/s. A benchmark,
// not a test: nothing is asserted.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>

#include <omp.h>

#include "cli/cli_common.h"
#include "core/caching_allocator.h"
#include "core/error.h"
#include "core/profile.h"
#include "model/gemma4_model.h"
#include "model/gemma4_training.h"
#include "model/weight_layout.h"
#include "ops/ops.h"
#include "train/adamw.h"
#include "train/compute_weights.h"
#include "train/model_loading.h"
#include "train/parameter_refs.h"
#include "train/presets.h"

namespace g4::cli {

namespace {

struct BenchOptions {
  std::string model, preset;
  std::int64_t batch = 1, seq = 512;
  int repeat = 5, warmup = 1;
  std::string device = "cpu", dtype = "auto";
  std::int64_t layers = 0;  // a preset's first N layers (0: all)
  bool optimizer = true;    // train: AdamW on f32 master weights after the backward
};

// The bench's model on its device: f32 master weights there when an optimizer updates them, else the weights
// in the compute dtype themselves.
struct BenchModel {
  Gemma4Model master;
  Allocator* device;
  DType dtype;
};

// A preset's config document, cut to its first `layers` layers when asked.
Json bench_config(const BenchOptions& o) {
  Json doc = preset_config(o.preset);
  if (o.layers > 0) {
    check(o.layers <= doc["num_hidden_layers"].get<std::int64_t>(), "--layers ", o.layers,
          " is more than preset ", o.preset, "'s ", doc["num_hidden_layers"].get<std::int64_t>());
    doc["num_hidden_layers"] = o.layers;
    Json types = Json::array();
    for (std::int64_t l = 0; l < o.layers; ++l)
      types.push_back(doc["layer_types"][static_cast<std::size_t>(l)]);
    doc["layer_types"] = types;
  }
  return doc;
}

Batch random_batch(const Gemma4Model& model, std::int64_t rows, std::int64_t seq) {
  Batch batch;
  batch.batch_size = rows;
  batch.seq_len = seq;
  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<std::int64_t> token(0, model.config.text.vocab_size - 1);
  for (std::int64_t i = 0; i < batch.tokens(); ++i) {
    batch.input_ids.push_back(token(rng));
    batch.position_ids.push_back(i % seq);
  }
  batch.labels = batch.input_ids;
  return batch;
}

BenchModel bench_model(const BenchOptions& o, bool masters, bool backward) {
  check(o.model.empty() != o.preset.empty(), "give exactly one of --model DIR and --preset NAME");
  check(o.layers == 0 || !o.preset.empty(), "--layers cuts a --preset");
  check(o.batch > 0 && o.seq > 0 && o.repeat > 0 && o.warmup >= 0 && o.layers >= 0,
        "--batch, --seq, --repeat must be positive");
  const DType dtype = compute_dtype(o.dtype, o.device);
  Allocator& device = device_allocator(o.device, "bench");
  BenchModel m{o.model.empty() ? init_gemma4_model(bench_config(o), 1234) : load_gemma4_model(o.model),
               &device, dtype};
  if (device.device() != Device::cpu) {
    // f32 masters, gradients and moments with the compute copy; or the weights in the compute dtype (and f32
    // gradients for a backward).
    const double params = static_cast<double>(count_parameters(m.master.config.text).total);
    const double per_param = masters ? 16.0 + dtype_size(dtype) : dtype_size(dtype) + (backward ? 4.0 : 0.0);
    require_available(device, params * per_param, "bench",
                      human_count(params) + " parameters, " + std::to_string(static_cast<int>(per_param)) +
                          " bytes each before activations");
    move_weights(m.master.config, m.master.weights, device, masters ? DType::f32 : dtype);
  }
  return m;
}

// Peak device memory of the run so far (the GPU's caching allocator holds every tensor and CUDA buffer).
std::uint64_t peak_bytes(const Allocator& device) {
  const auto* caching = dynamic_cast<const CachingAllocatorBase*>(&device);
  return caching ? caching->stats().peak_in_use : 0;
}

// Runs `step` o.warmup times untimed and o.repeat times timed; prints one JSON line (median, min, tokens/s).
int time_steps(const std::string& what, const BenchOptions& o, const Batch& batch, const BenchModel& m,
               const std::function<void()>& step) {
  std::vector<double> seconds;
  for (int r = 0; r < o.warmup + o.repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    step();
    m.device->synchronize();
    if (r >= o.warmup)
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  Json line = {{"what", what},
               {"device", device_name(m.device->device())},
               {"dtype", dtype_name(m.dtype)},
               {"batch", o.batch},
               {"seq", o.seq},
               {"threads", omp_get_max_threads()},
               {"median_s", median},
               {"min_s", seconds.front()},
               {"tokens_per_s", static_cast<double>(batch.tokens()) / median}};
  if (m.device->device() != Device::cpu) line["peak_device_bytes"] = peak_bytes(*m.device);
  std::printf("%s\n", line.dump().c_str());
  print_profile();
  return 0;
}

// One training step = forward + backward + AdamW over every parameter (no clipping), like a peer's
// loss.backward(); optimizer.step(); optimizer.zero_grad().
int run_bench_train(const BenchOptions& o) {
  BenchModel m = bench_model(o, o.optimizer, /*backward=*/true);
  Gemma4Model& model = m.master;
  const Batch batch = random_batch(model, o.batch, o.seq);
  Gemma4Weights grads = zeros_like(model.config, model.weights);
  if (m.device->device() != Device::cpu) move_weights(model.config, grads, *m.device);
  const std::vector<Tensor*> grad_list = gradient_tensors(model.config, grads);
  const std::vector<ParamRef> params = parameter_refs(model.config, model.weights, grads);
  ComputeWeights compute(model,
                         o.optimizer ? m.dtype : DType::f32);  // without masters: the weights themselves
  AdamW adamw(AdamWConfig{0.9, 0.999, 1e-8, 0.01});
  // As `g4moe train` runs its steps: the host's activations from a cache (a GPU's always come from one).
  HostCachingAllocator activations;
  const ActivationScope scope(activations);
  const std::string what = std::string("g4moe ") + device_name(m.device->device()) +
                           (o.optimizer ? " train step" : " forward+backward");
  return time_steps(what, o, batch, m, [&] {
    for (Tensor* g : grad_list) ops::zero_(*g);
    gemma4_forward_backward(compute.model(), batch, grads);
    if (!o.optimizer) return;
    adamw.step(params, 1e-5);
    compute.refresh();
  });
}

int run_bench_forward(const BenchOptions& o) {
  const BenchModel m = bench_model(o, /*masters=*/false, /*backward=*/false);
  const Batch batch = random_batch(m.master, o.batch, o.seq);
  const std::string what = std::string("g4moe ") + device_name(m.device->device()) + " forward";
  return time_steps(what, o, batch, m, [&] { gemma4_forward(m.master, batch); });
}

}  // namespace

Action register_bench(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("bench", "Benchmarks (not tests): time parts of g4moe and print JSON lines.");
  cmd->require_subcommand(1);
  auto* fwd =
      cmd->add_subcommand("forward", "Time the forward pass on random token ids (median of --repeat runs).");
  auto o = std::make_shared<BenchOptions>();
  auto train =
      cmd->add_subcommand("train", "Time training steps (forward + backward + AdamW) on random ids.");
  auto mode = std::make_shared<std::string>("forward");
  for (CLI::App* sub : {fwd, train}) {
    sub->add_option("--model", o->model, "checkpoint directory");
    sub->add_option("--preset", o->preset,
                    "a built-in model instead (tiny-moe, gemma-4-26b-a4b), randomly initialised");
    sub->add_option("--layers", o->layers, "only the preset's first N layers (0: all)")
        ->capture_default_str();
    sub->add_option("--batch", o->batch, "rows per batch")->capture_default_str();
    sub->add_option("--seq", o->seq, "tokens per row")->capture_default_str();
    sub->add_option("--repeat", o->repeat, "timed runs")->capture_default_str();
    sub->add_option("--warmup", o->warmup, "untimed runs first")->capture_default_str();
    sub->add_option("--device", o->device, "cpu or cuda (one GPU)")->capture_default_str();
    sub->add_option(
           "--dtype", o->dtype,
           "compute dtype: auto (f32 on cpu, bf16 on cuda), f32, bf16 (cuda only; f32 master weights "
           "and AdamW state either way)")
        ->capture_default_str();
  }
  train->add_flag(
      "!--no-optimizer", o->optimizer,
      "forward and backward only: no AdamW, so no f32 master weights or moments on the device (the "
      "weights themselves are in --dtype)");
  train->callback([mode] { *mode = "train"; });
  return [o, mode] { return *mode == "train" ? run_bench_train(*o) : run_bench_forward(*o); };
}

}  // namespace g4::cli
