#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include "core/regex.h"

#include "core/error.h"
#include "core/progress.h"
#include "data/packed_dataset.h"
#include "data/text_codec.h"
#include "generate/greedy.h"
#include "model/gemma4_training.h"
#include "model/presets.h"
#include "ops/cpu/cross_entropy.h"
#include "train/loss_plot.h"
#include "train/lr_schedule.h"
#include "train/parallel_training.h"
#include "train/parameter_refs.h"
#include "train/stop_signals.h"
#include "train/train_checkpoint.h"
#include "train/zero_optimizer.h"

namespace g4 {

namespace fs = std::filesystem;

namespace {

struct ModelSource {
  Gemma4Model model;
  Json config_doc;
};

// The model and this rank's parallel layout. A checkpoint is read with this rank's expert range (only its
// experts' bytes are read); a preset is initialised whole (its random draw does not depend on the layout).
ModelSource load_model(const Recipe& r, const std::string& resume_dir, TrainParallel& par) {
  const std::string dir = !resume_dir.empty() ? resume_dir : r.model_path;
  if (!dir.empty()) {
    par = make_train_parallel(load_config(dir), static_cast<int>(r.ep), r.dispatcher);
    return {load_gemma4_model(dir, par.setup.experts), read_json_file(dir + "/config.json")};
  }
  Json doc = preset_config(r.model_preset);
  ModelSource src{init_gemma4_model(doc, r.model_seed), doc};
  par = make_train_parallel(src.model.config, static_cast<int>(r.ep), r.dispatcher);
  return src;
}

double eval_loss(const Gemma4Model& model, const PackedRows& rows, std::int64_t batch_size) {
  double sum = 0;
  std::int64_t count = 0;
  for (std::int64_t first = 0; first < rows.rows(); first += batch_size) {
    const Batch b = rows.batch(first, std::min(batch_size, rows.rows() - first));
    const ForwardResult out = gemma4_forward(model, b);
    const LossResult l = causal_lm_loss(out.logits.f32(), b.labels.data(), b.batch_size, b.seq_len,
                                        model.config.text.vocab_size);
    sum += l.loss_sum;
    count += l.num_tokens;
  }
  return count ? sum / static_cast<double>(count) : NAN;
}

std::int64_t count_labels(const Batch& b) {
  std::int64_t n = 0;
  for (std::int64_t r = 0; r < b.batch_size; ++r)
    for (std::int64_t t = 1; t < b.seq_len; ++t) n += b.labels[r * b.seq_len + t] != kIgnoreIndex;
  return n;
}

void append_line(const std::string& path, const Json& line) {
  std::ofstream out(path, std::ios::app);
  out << line.dump() << "\n";
  check(out.good(), "cannot write ", path);
}

}  // namespace

TrainOutcome run_training(const Recipe& r, const std::string& resume_dir) {
  // Under mpirun (parallel.ep): this rank's experts, rows and groups; one process: the plain path.
  TrainParallel par;
  ModelSource src = load_model(r, resume_dir, par);
  Gemma4Model& model = src.model;
  shard_model(par, model);
  const TextConfig& c = model.config.text;
  // The tokenizer of the model directory (tokenizer.json), else the byte tokenizer of the presets.
  const std::string model_dir = !resume_dir.empty() ? resume_dir : r.model_path;
  const TextCodec codec = model_dir.empty() ? byte_codec() : codec_for_model_dir(model_dir);
  const bool byte_tokenizer = codec.kind == "byte";
  check(c.vocab_size >= codec.vocab_size, "the model's vocab_size ", c.vocab_size,
        " is smaller than its tokenizer's (", codec.vocab_size, ")");

  DatasetOptions data_options{r.seq_len, c.vocab_size, r.eval_fraction, r.truncate, r.data_seed, codec};
  const PackedDataset data = load_packed_dataset(r.data_path, data_options);

  AdamW adamw(AdamWConfig{r.beta1, r.beta2, r.eps, r.weight_decay});
  std::int64_t step = 0, cursor = 0;
  double tokens_seen = 0;
  if (!resume_dir.empty()) {
    const Json state = load_train_state(resume_dir, adamw);
    shard_optimizer(par, adamw);
    step = json_int(state.at("step"), "step", resume_dir);
    cursor = json_int(state.at("data_cursor"), "data_cursor", resume_dir);
    tokens_seen = json_number(state.at("tokens_seen"), "tokens_seen", resume_dir);
  }
  fs::create_directories(r.output_dir);
  const std::string metrics_path = r.output_dir + "/metrics.jsonl";
  if (resume_dir.empty() && par.root()) std::ofstream(metrics_path, std::ios::trunc);

  // Parameters: all but the frozen ones (names matched against the recipe's regexes).
  std::vector<std::regex> frozen;
  for (const std::string& pattern : r.freeze) {
    try {
      frozen.emplace_back(pattern);
    } catch (const std::regex_error&) {
      fail("train.freeze pattern \"", pattern, "\" is not a valid regular expression");
    }
  }
  Gemma4Weights grads = zeros_like(model.config, model.weights);
  const std::vector<Tensor*> all_grads = gradient_tensors(model.config, grads);
  std::vector<ParamRef> params;
  std::vector<Tensor*> trainable_grads;
  const std::vector<ParamRef> every = parameter_refs(model.config, model.weights, grads);
  for (std::size_t i = 0; i < every.size(); ++i) {
    bool is_frozen = false;
    for (const std::regex& re : frozen) is_frozen = is_frozen || std::regex_search(every[i].name, re);
    if (is_frozen) continue;
    params.push_back(every[i]);
    trainable_grads.push_back(all_grads[i]);
  }
  check(!params.empty(), "every parameter is frozen by train.freeze");

  // parallel.zero = 1: the moments live sharded in `zero` (resumed ones are handed over from `adamw`).
  std::unique_ptr<ZeroOptimizer> zero;
  if (r.zero == 1) {
    zero = std::make_unique<ZeroOptimizer>(*par.setup.groups.dp, adamw.config());
    zero->load(adamw, params);
    std::int64_t all = 0;
    for (const ParamRef& p : params) all += p.param->numel();
    if (par.root())  // rank 0 owns the largest blocks
      std::fprintf(stderr,
                   "g4moe train: ZeRO-1 over %d data-parallel replicas: AdamW moments %.2f MB on rank 0 "
                   "instead of %.2f MB\n",
                   par.setup.groups.dp_size, 8e-6 * static_cast<double>(zero->owned_elements(params)),
                   8e-6 * static_cast<double>(all));
  }

  std::vector<std::pair<double, double>> train_curve, eval_curve;
  if (!resume_dir.empty()) {  // the plot covers the whole run
    std::ifstream in(metrics_path);
    for (std::string line; std::getline(in, line);) {
      const Json j = Json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("loss")) train_curve.emplace_back(j["step"].get<double>(), j["loss"].get<double>());
      if (j.contains("eval_loss"))
        eval_curve.emplace_back(j["step"].get<double>(), j["eval_loss"].get<double>());
    }
  }

  auto trainer_state = [&] {
    return Json{{"step", step},
                {"data_cursor", cursor},
                {"tokens_seen", tokens_seen},
                {"model_seed", r.model_seed},
                {"data_seed", r.data_seed},
                {"recipe", r.to_json()}};
  };
  auto save = [&] {  // every rank takes part (experts are gathered); rank 0 writes
    AdamW zero_moments = zero ? zero->gathered(params) : AdamW();  // over the DP group
    with_gathered(par, model, zero ? zero_moments : adamw, [&](Gemma4Model& full, AdamW& optimizer) {
      save_train_checkpoint(r.output_dir + "/checkpoint-" + std::to_string(step), full, src.config_doc,
                            optimizer, trainer_state(), byte_tokenizer, byte_tokenizer ? "" : model_dir);
    });
  };

  // SIGINT (and under mpirun SIGTERM / SIGUSR1, see stop_signals.h) stops after the current step.
  const StopSignals stop(launched_by_mpi());
  if (par.root())
    std::fprintf(stderr,
                 "g4moe train: %lld documents (%lld truncated), %lld train rows and %lld eval rows of %lld "
                 "tokens; %zu trainable tensors\n",
                 static_cast<long long>(data.documents), static_cast<long long>(data.truncated),
                 static_cast<long long>(data.train.rows()), static_cast<long long>(data.eval.rows()),
                 static_cast<long long>(r.seq_len), params.size());
  ProgressBar progress("train", r.steps, 5.0);
  progress.set_first(step);
  TrainOutcome outcome;
  const auto start = std::chrono::steady_clock::now();
  const double tokens_at_start = tokens_seen;
  while (step < r.steps) {
    for (Tensor* g : all_grads) std::fill(g->f32(), g->f32() + g->numel(), 0.0f);
    std::vector<Batch> micro;
    std::int64_t label_tokens = 0;
    for (std::int64_t m = 0; m < r.grad_accumulation; ++m) {
      micro.push_back(data.train.batch(cursor, r.batch_size));
      cursor = (cursor + r.batch_size) % data.train.rows();
      label_tokens += count_labels(micro.back());
    }
    double loss_sum = 0;
    for (const Batch& b : micro)
      loss_sum +=
          gemma4_forward_backward(model, local_rows(par, b), grads,
                                  static_cast<double>(std::max<std::int64_t>(1, label_tokens)), r.recompute)
              .loss_sum;
    loss_sum = sum_over_replicas(par, loss_sum);
    if (zero)
      zero->reduce_gradients(params);
    else
      sum_gradients(par, all_grads);
    const double loss = loss_sum / static_cast<double>(std::max<std::int64_t>(1, label_tokens));
    ++step;
    if (!std::isfinite(loss)) {
      fail("loss is ", loss, " at step ", step, ": training stopped; the last good checkpoint in ",
           r.output_dir, " is kept (lower train.lr or raise train.warmup_steps)");
    }
    const double grad_norm = zero ? zero->clip_grad_norm(params, r.max_grad_norm, par.setup.groups.ep.get())
                                  : clip_grad_norm_parallel(par, params, r.max_grad_norm);
    const double lr = learning_rate(r.schedule, r.lr, step, r.steps, r.warmup_steps, r.min_lr_ratio);
    if (zero)
      zero->step(params, lr);
    else
      adamw.step(params, lr);
    for (const Batch& b : micro) tokens_seen += static_cast<double>(b.tokens());
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double tokens_per_s = (tokens_seen - tokens_at_start) / std::max(elapsed, 1e-9);
    train_curve.emplace_back(static_cast<double>(step), loss);
    if (par.root() && (step % std::max<std::int64_t>(1, r.log_every) == 0 || step == r.steps))
      append_line(metrics_path, Json{{"step", step},
                                     {"loss", loss},
                                     {"lr", lr},
                                     {"grad_norm", grad_norm},
                                     {"tokens", tokens_seen},
                                     {"tokens_per_s", tokens_per_s},
                                     {"elapsed_s", elapsed}});
    if (r.eval_every > 0 && data.eval.rows() > 0 && (step % r.eval_every == 0 || step == r.steps)) {
      const double ev = eval_loss(model, data.eval, r.batch_size);
      eval_curve.emplace_back(static_cast<double>(step), ev);
      if (par.root()) append_line(metrics_path, Json{{"step", step}, {"eval_loss", ev}});
    }
    char figures[160];
    std::snprintf(figures, sizeof figures, "loss %.4f lr %.2e gnorm %.3f | %.0f tok/s", loss, lr, grad_norm,
                  tokens_per_s);
    if (par.root()) progress.update(step, figures);
    outcome.last_loss = loss;
    if (r.save_every > 0 && step % r.save_every == 0 && step < r.steps) save();
    // Once per step, every rank the same answer: all stop after this step and save together.
    if (any_rank(par, stop.requested())) {
      progress.finish();
      save();
      if (par.root())
        std::fprintf(stderr,
                     "g4moe train: interrupted%s%s at step %lld; saved %s/checkpoint-%lld (resume with "
                     "--resume)\n",
                     *stop.signal_name() ? " by " : "", stop.signal_name(), static_cast<long long>(step),
                     r.output_dir.c_str(), static_cast<long long>(step));
      outcome.exit_code = 130;
      break;
    }
  }
  progress.finish();
  outcome.steps_done = step;
  if (outcome.exit_code == 0) save();
  if (par.root()) write_loss_plot(r.output_dir + "/loss.png", LossCurves{train_curve, eval_curve, {}});
  if (outcome.exit_code == 0 && r.sample_tokens > 0) {
    std::vector<std::int64_t> prompt{codec.bos};
    const auto body = codec.encode(r.sample_prompt);
    prompt.insert(prompt.end(), body.begin(), body.end());
    const auto out = greedy_generate(model, prompt, r.sample_tokens, codec.eos);
    if (par.root()) std::printf("sample: %s%s\n", r.sample_prompt.c_str(), codec.decode(out).c_str());
  }
  return outcome;
}

}  // namespace g4
