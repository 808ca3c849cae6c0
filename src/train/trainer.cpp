#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "core/caching_allocator.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/regex.h"
#include "data/packed_dataset.h"
#include "data/tokenizer.h"
#include "io/config.h"
#include "model/gemma4_training.h"
#include "model/weight_layout.h"
#include "ops/ops.h"
#include "train/compute_weights.h"
#include "train/image_encoder.h"
#include "train/loss_plot.h"
#include "train/lr_schedule.h"
#include "train/model_loading.h"
#include "train/optimizer.h"
#include "train/parallel_training.h"
#include "train/parameter_refs.h"
#include "train/presets.h"
#include "train/run_directory.h"
#include "train/stop_signals.h"
#include "train/train_checkpoint.h"

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
    ModelSource src{load_gemma4_model(dir, par.setup.experts), read_json_file(dir + "/config.json")};
    const std::string bad = non_finite_weight(src.model);
    check(bad.empty(), "weight ", bad, " of ", dir, " is NaN or infinite: nothing to train from");
    return src;
  }
  Json doc = preset_config(r.model_preset);
  ModelSource src{init_gemma4_model(doc, r.model_seed), doc};
  par = make_train_parallel(src.model.config, static_cast<int>(r.ep), r.dispatcher);
  return src;
}

double eval_loss(const Gemma4Model& model, const PackedRows& rows, std::int64_t batch_size,
                 ImageEncoder* images) {
  double sum = 0;
  std::int64_t count = 0;
  for (std::int64_t first = 0; first < rows.rows(); first += batch_size) {
    const std::int64_t n = std::min(batch_size, rows.rows() - first);
    const Batch b = rows.batch(first, n);
    const Tensor soft = rows.has_images() ? images->soft_tokens(rows.images(first, n)) : Tensor();
    // the head in chunks: no [tokens, vocab] logits
    const LossResult l = gemma4_loss(model, b, 0, rows.has_images() ? &soft : nullptr);
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

// The parameters train.freeze leaves trainable. A pattern that matches no parameter is an error: it is
// almost always a typo, and training everything instead would be a silent surprise.
std::vector<std::size_t> trainable_indices(const std::vector<ParamRef>& every,
                                           const std::vector<std::string>& patterns) {
  std::vector<std::regex> frozen;
  for (const std::string& pattern : patterns) {
    try {
      frozen.emplace_back(pattern);
    } catch (const std::regex_error&) {
      fail("train.freeze pattern \"", pattern, "\" is not a valid regular expression");
    }
  }
  std::vector<bool> used(frozen.size(), false);
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < every.size(); ++i) {
    bool is_frozen = false;
    for (std::size_t k = 0; k < frozen.size(); ++k)
      if (std::regex_search(every[i].name, frozen[k])) is_frozen = used[k] = true;
    if (!is_frozen) out.push_back(i);
  }
  for (std::size_t k = 0; k < frozen.size(); ++k)
    check(used[k], "train.freeze pattern \"", patterns[k], "\" matches no parameter (names look like \"",
          every.front().name, "\"; see g4moe inspect)");
  check(!out.empty(), "every parameter is frozen by train.freeze");
  return out;
}

// Restores a checkpoint's optimizer state (and fp32 master weights) for `params`, after checking that it
// belongs to this model and recipe.
TrainerState resume_from(const std::string& dir, const Recipe& r, bool allow_recipe_change,
                         const TrainParallel& par, Gemma4Model& model, const std::vector<ParamRef>& params,
                         AdamW& adamw) {
  std::map<std::string, Shape> shapes;
  for (const ParamRef& p : params)
    shapes[p.name] = full_parameter_shape(par, model.config, p.name, p.param->shape());
  std::map<std::string, Tensor> masters;
  const TrainerState state =
      load_train_state(dir, shapes, adamw, model.storage_dtype != DType::f32 ? &masters : nullptr);
  for (const ParamRef& p : params)
    if (masters.count(p.name)) *p.param = local_part(par, p.name, masters.at(p.name)).clone();
  shard_optimizer(par, adamw);
  const std::vector<std::string> changed = resume_conflicts(state.recipe, r);
  if (!changed.empty() && !allow_recipe_change) {
    std::string keys;
    for (const std::string& k : changed) keys += (keys.empty() ? "" : ", ") + k;
    fail("the recipe changed what cannot change in the middle of a run (", keys, ") since ", dir,
         " was written; restore it, or pass --allow-recipe-change to continue anyway");
  }
  check(state.step < r.steps, "checkpoint ", dir, " is at step ", state.step, " and train.steps is ", r.steps,
        ": nothing is left to train (raise train.steps to continue)");
  return state;
}

// Which checkpoint of this run a divergence falls back to: the newest one whose own weights gave a finite
// loss (a checkpoint's weights are the ones the next step's forward uses).
class CheckpointHealth {
 public:
  explicit CheckpointHealth(std::string resumed) : pending_(std::move(resumed)) {}
  void saved(const std::string& dir) { pending_ = dir; }
  void finite_loss() {
    if (!pending_.empty()) verified_ = pending_;
    pending_.clear();
  }
  std::string advice() const {
    std::string out;
    if (!pending_.empty()) out = pending_ + " gives this loss already; ";
    return out + (verified_.empty() ? "no checkpoint of this run gave a finite loss"
                                    : "the last checkpoint whose own loss was finite is " + verified_);
  }

 private:
  std::string pending_, verified_;
};

// The trained vision tensors written over the checkpoint's carried copies, in their stored dtype.
void replace_carried(Gemma4Model& model, const std::vector<std::pair<std::string, Tensor>>& trained) {
  for (const auto& [name, t] : trained)
    for (auto& [carried_name, carried] : model.carried)
      if (carried_name == name)
        carried = carried.dtype() == DType::f32 ? t.clone() : t.to_dtype(carried.dtype());
}

}  // namespace

TrainOutcome run_training(const Recipe& r, const std::string& resume_dir, Allocator& device,
                          bool allow_recipe_change, const AfterTraining& after) {
  // Under mpirun (parallel.ep): this rank's experts, rows and groups; one process: the plain path.
  TrainParallel par;
  ModelSource src = load_model(r, resume_dir, par);
  Gemma4Model& model = src.model;
  shard_model(par, model);
  const TextConfig& c = model.config.text;
  // The tokenizer of the model directory (tokenizer.json), else the byte tokenizer of the presets.
  const std::string model_dir = !resume_dir.empty() ? resume_dir : r.model_path;
  const Tokenizer tokenizer = model_dir.empty() ? byte_level_tokenizer() : tokenizer_for_model_dir(model_dir);
  const bool byte_tokenizer = tokenizer.kind == "byte";
  check(c.vocab_size >= tokenizer.vocab_size, "the model's vocab_size ", c.vocab_size,
        " is smaller than its tokenizer's (", tokenizer.vocab_size, ")");

  const bool on_device = device.device() != Device::cpu;
  const DType dtype = r.dtype == "auto" ? (on_device ? DType::bf16 : DType::f32)
                                        : (r.dtype == "bf16" ? DType::bf16 : DType::f32);
  // The vision side (train.vision): trained parts join the parameters; a frozen tower is made only when the
  // data has images (below).
  std::optional<ImageEncoder> images;
  if (r.vision != "frozen") {
    check(model.config.vision.has_value() && !model_dir.empty(), "train.vision ", r.vision,
          " needs a vision-language model (a checkpoint with a vision_config)");
    check(par.world->size() == 1, "image-text data trains in one process so far (no mpirun)");
    images.emplace(model.config, model_dir, device, dtype, r.vision);
  }

  // Parameters: all but the frozen ones (names matched against the recipe's regexes).
  Gemma4Weights grads = zeros_like(model.config, model.weights);
  const std::vector<Tensor*> all_grads = gradient_tensors(model.config, grads);
  const std::vector<ParamRef> every = parameter_refs(model.config, model.weights, grads);
  std::vector<ParamRef> params;
  for (std::size_t i : trainable_indices(every, r.freeze)) params.push_back(every[i]);
  std::vector<Tensor*> all_grads_and_vision = all_grads;
  if (images) {
    for (const ParamRef& p : images->parameters()) params.push_back(p);
    for (Tensor* g : images->gradients()) all_grads_and_vision.push_back(g);
  }

  AdamW adamw(AdamWConfig{r.beta1, r.beta2, r.eps, r.weight_decay});
  TrainerState resumed;
  if (!resume_dir.empty())
    resumed = resume_from(resume_dir, r, allow_recipe_change, par, model, params, adamw);
  // On a GPU: f32 masters, gradients and moments there; the forward and backward on the compute copy.
  if (on_device) {
    check(par.world->size() == 1, "train.device ", device_name(device.device()),
          " trains on one GPU in one process so far (no mpirun)");
    check(r.zero == 0, "parallel.zero 1 shards over data-parallel replicas; train.device ",
          device_name(device.device()), " runs one");
    const double params = static_cast<double>(count_parameters(model.config.text).total);
    const double per_param =
        16.0 + (r.dtype == "f32" ? 0.0 : 2.0);  // masters, gradients, moments, compute copy
    require_available(device, params * per_param, "train",
                      std::to_string(static_cast<long long>(params)) +
                          " parameters: f32 master weights, gradients and "
                          "AdamW moments" +
                          (r.dtype == "f32" ? "" : " and a bf16 copy") + ", before activations");
    move_weights(model.config, model.weights, device);
    move_weights(model.config, grads, device);
    for (auto& [name, m] : adamw.state()) m = {m.first.to(device), m.second.to(device)};
  }
  ComputeWeights compute(model, dtype);
  // Host copies of what lives on the device (checkpoints, the sample): the model itself on the host.
  auto host_model = [&] {
    Gemma4Model copy = model;
    if (on_device) move_weights(copy.config, copy.weights, host_allocator());
    return copy;
  };
  std::int64_t step = resumed.step, cursor = resumed.data_cursor;
  double tokens_seen = resumed.tokens_seen;

  DatasetOptions data_options;
  data_options.seq_len = r.seq_len;
  data_options.vocab_size = c.vocab_size;
  data_options.eval_fraction = r.eval_fraction;
  data_options.truncate = r.truncate;
  data_options.seed = r.data_seed;
  data_options.tokenizer = tokenizer;
  data_options.eval_path = r.eval_data_path;
  if (model.config.vision && !model_dir.empty())
    data_options.images = {model.config.image_begin_id, model.config.image_token_id,
                           model.config.image_end_id,
                           load_image_processor_config(model_dir, model.config.vision->patch_size,
                                                       model.config.vision->pooling_kernel_size)};
  const PackedDataset data = load_packed_dataset(r.data_path, data_options);
  // Image-text data: the vision tower (frozen unless train.vision says otherwise) turns each batch's images
  // into soft tokens.
  if (!images && (data.train.has_images() || data.eval.has_images())) {
    check(par.world->size() == 1, "image-text data trains in one process so far (no mpirun)");
    images.emplace(model.config, model_dir, device, dtype);
  }
  // A trained vision side without images would only decay (AdamW's weight decay acts without a gradient).
  check(r.vision == "frozen" || data.train.has_images(), "train.vision is ", r.vision,
        " but no training line of ", r.data_path,
        " has an image: nothing would train the vision side (set train.vision frozen)");
  check(cursor < data.train.rows(), "data_cursor ", cursor, " of ", resume_dir, " is past the ",
        data.train.rows(), " training rows of ", r.data_path);

  // Every rank checks output.dir before rank 0 writes to it.
  RunDirectory run(r.output_dir, r.overwrite, resume_dir.empty() ? -1 : step);
  any_rank(par, false);
  if (par.root()) run.prepare();

  // parallel.zero: replicated or sharded moments (train/optimizer.h); resumed moments are handed over.
  const std::unique_ptr<Optimizer> optimizer = make_optimizer(par, r.zero, std::move(adamw), params);

  auto trainer_state = [&] {
    return Json{{"step", step},
                {"data_cursor", cursor},
                {"tokens_seen", tokens_seen},
                {"model_seed", r.model_seed},
                {"data_seed", r.data_seed},
                {"recipe", r.to_json()}};
  };
  CheckpointHealth health(resume_dir);
  auto save = [&] {  // every rank takes part (experts are gathered); rank 0 writes
    Gemma4Model saved = host_model();
    if (images) replace_carried(saved, images->trained_weights());
    const std::string bad = non_finite_weight(saved);
    if (any_rank(par, !bad.empty()))  // every rank stops, also those whose own shard is finite
      fail("a weight became NaN or infinite", bad.empty() ? "" : " (" + bad + ")", " after step ", step,
           ": no checkpoint is written; ", health.advice(), " (lower train.lr or set train.max_grad_norm)");
    AdamW moments = optimizer->moments(params);  // gathered over the DP group when sharded
    if (on_device)
      for (auto& [name, m] : moments.state())
        m = {m.first.to(host_allocator()), m.second.to(host_allocator())};
    const std::string dir = run.checkpoint_path(step);
    CheckpointOptions options;
    options.replace_existing = run.may_replace_checkpoint(step);
    options.byte_tokenizer = byte_tokenizer;
    options.tokenizer_dir = byte_tokenizer ? "" : model_dir;
    with_gathered(par, saved, moments, [&](Gemma4Model& full, AdamW& full_moments) {
      save_train_checkpoint(dir, full, src.config_doc, full_moments, trainer_state(), options);
      for (const std::string& removed : run.checkpoint_written(step, r.save_total_limit))
        std::fprintf(stderr, "g4moe train: removed %s (output.save_total_limit %lld)\n", removed.c_str(),
                     static_cast<long long>(r.save_total_limit));
    });
    health.saved(dir);
  };

  // SIGINT and SIGTERM (and under mpirun SIGUSR1, see stop_signals.h) stop after the current step.
  const StopSignals stop(launched_by_mpi());
  if (par.root()) {
    std::fprintf(stderr,
                 "g4moe train: %lld documents (%lld truncated), %lld train rows and %lld eval rows of %lld "
                 "tokens; %zu trainable tensors\n",
                 static_cast<long long>(data.documents), static_cast<long long>(data.truncated),
                 static_cast<long long>(data.train.rows()), static_cast<long long>(data.eval.rows()),
                 static_cast<long long>(r.seq_len), params.size());
    if (data.untrained_documents > 0)
      std::fprintf(stderr,
                   "g4moe train: warning: %lld documents have no token that counts in the loss (e.g. "
                   "conversations without a model turn); they are packed but teach nothing\n",
                   static_cast<long long>(data.untrained_documents));
  }
  ProgressBar progress("train", r.steps, 5.0);
  progress.set_first(step);
  // Every step's activations come from one cache, so after the first step they reuse its blocks.
  HostCachingAllocator activations;
  const ActivationScope activation_scope(activations);
  TrainOutcome outcome;
  bool warned_zero_norm = false;
  const auto start = std::chrono::steady_clock::now();
  const double tokens_at_start = tokens_seen;
  while (step < r.steps) {
    for (Tensor* g : all_grads_and_vision) ops::zero_(*g);
    std::vector<Batch> micro;
    std::vector<std::vector<DocumentImage>> micro_images;
    std::int64_t label_tokens = 0;
    for (std::int64_t m = 0; m < r.grad_accumulation; ++m) {
      micro.push_back(data.train.batch(cursor, r.batch_size));
      micro_images.push_back(data.train.images(cursor, r.batch_size));
      cursor = (cursor + r.batch_size) % data.train.rows();
      label_tokens += count_labels(micro.back());
    }
    double loss_sum = 0;
    for (std::size_t m = 0; m < micro.size(); ++m) {
      const double normaliser = static_cast<double>(std::max<std::int64_t>(1, label_tokens));
      if (!data.train.has_images()) {
        loss_sum += gemma4_forward_backward(compute.model(), local_rows(par, micro[m]), grads, normaliser,
                                            r.recompute)
                        .loss_sum;
        continue;
      }
      const Tensor soft = images->soft_tokens(micro_images[m], /*for_backward=*/true);
      Tensor d_soft;
      loss_sum += gemma4_forward_backward(compute.model(), micro[m], grads, normaliser, r.recompute, 0, &soft,
                                          &d_soft)
                      .loss_sum;
      images->backward(d_soft);  // nothing when the tower is frozen
    }
    loss_sum = sum_over_replicas(par, loss_sum);
    optimizer->reduce_gradients(params);
    const double loss = loss_sum / static_cast<double>(std::max<std::int64_t>(1, label_tokens));
    ++step;
    if (!std::isfinite(loss))
      fail("loss is ", loss, " at step ", step, ": training stopped before updating the weights; ",
           health.advice(), " (lower train.lr or raise train.warmup_steps)");
    health.finite_loss();
    const double grad_norm = optimizer->clip_grad_norm(params, r.max_grad_norm);
    if (!std::isfinite(grad_norm))
      fail("gradient norm is ", grad_norm, " at step ", step, " (loss ", loss,
           "): training stopped before updating the weights; ", health.advice(),
           " (lower train.lr or set train.max_grad_norm)");
    if (grad_norm == 0 && !warned_zero_norm && par.root()) {
      std::fprintf(stderr,
                   "\ng4moe train: warning: the gradient norm is 0 at step %lld: no trainable parameter "
                   "receives a gradient from this batch (is everything that matters frozen, or is no "
                   "token a training target?)\n",
                   static_cast<long long>(step));
      warned_zero_norm = true;
    }
    const double lr = learning_rate(r.schedule, r.lr, step, r.steps, r.warmup_steps, r.min_lr_ratio);
    optimizer->step(params, lr);
    compute.refresh();
    for (const Batch& b : micro) tokens_seen += static_cast<double>(b.tokens());
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double tokens_per_s = (tokens_seen - tokens_at_start) / std::max(elapsed, 1e-9);
    if (par.root() && (step % std::max<std::int64_t>(1, r.log_every) == 0 || step == r.steps))
      run.append_metrics(Json{{"step", step},
                              {"loss", loss},
                              {"lr", lr},
                              {"grad_norm", grad_norm},
                              {"tokens", tokens_seen},
                              {"tokens_per_s", tokens_per_s},
                              {"elapsed_s", elapsed}});
    if (r.eval_every > 0 && data.eval.rows() > 0 && (step % r.eval_every == 0 || step == r.steps)) {
      const double ev = eval_loss(compute.model(), data.eval, r.batch_size, images ? &*images : nullptr);
      if (par.root()) run.append_metrics(Json{{"step", step}, {"eval_loss", ev}});
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
        std::fprintf(stderr, "g4moe train: interrupted%s%s at step %lld; saved %s (resume with --resume)\n",
                     *stop.signal_name() ? " by " : "", stop.signal_name(), static_cast<long long>(step),
                     run.checkpoint_path(step).c_str());
      outcome.exit_code = 130;
      break;
    }
  }
  progress.finish();
  outcome.steps_done = step;
  if (outcome.exit_code == 0) save();
  if (par.root()) write_loss_plot(r.output_dir + "/loss.png", run.curves());
  if (outcome.exit_code == 0 && after) after(on_device ? host_model() : model, tokenizer, par.root());
  return outcome;
}

}  // namespace g4
