// cmd_score.cpp: `g4moe score --model DIR --input FILE.json [--output OUT.safetensors] [--grads]
// [--ep E --dispatcher allgather|alltoall] [--device cpu|cuda]`: the causal-LM loss of a batch, printed as
// one JSON line, and optionally the logits as safetensors.
//
// Under `mpirun -np N`: EP groups of E consecutive ranks each hold a block of experts and share their batch
// rows (the MoE blocks split the tokens among the group); the N/E data-parallel replicas take contiguous
// blocks of the rows (all rows when N == E). Loss sums, logits and gradients are summed / gathered over the
// DP group, expert gradients then gathered over the EP group; world rank 0 alone prints and writes.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"
#include "data/score_input.h"
#include "dist/communicator.h"
#include "io/config.h"
#include "io/output_paths.h"
#include "io/safetensors_writer.h"
#include "model/batch_rows.h"
#include "model/gemma4_model.h"
#include "model/gemma4_training.h"
#include "moe/parallel_setup.h"
#include "train/checkpoint_layout.h"
#include "train/image_encoder.h"
#include "train/model_loading.h"

namespace g4::cli {

namespace {

struct ScoreOptions {
  std::string model, input, output;
  bool grads = false, overwrite = false;
  int ep = 1;
  std::string dispatcher = "alltoall";
  std::string device = "cpu";
  std::string dtype = "auto";
};

// Every DP replica's logits rows [b, S, V] (row_block order), on every rank of the DP group.
Tensor gather_logits(Communicator& dp, const Tensor& local, std::int64_t batch_size) {
  Shape shape = local.shape();
  shape[0] = batch_size;
  Tensor full(DType::f32, shape);
  const std::size_t row = local.nbytes() / static_cast<std::size_t>(std::max<std::int64_t>(local.dim(0), 1));
  std::vector<std::size_t> bytes;
  for (int r = 0; r < dp.size(); ++r) bytes.push_back(row_block(batch_size, dp.size(), r).count * row);
  dp.all_gather_v(local.bytes(), local.nbytes(), full.bytes(), bytes);
  return full;
}

// --output may replace an existing file only with --overwrite, and never a file of the model directory (its
// weights, config or tokenizer).
void check_output_path(const ScoreOptions& o) {
  if (o.output.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(o.output, ec);
  for (auto it = fs::directory_iterator(o.model, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::error_code ignored;
    check(fs::weakly_canonical(it->path(), ignored) != out, "--output ", o.output, " is ",
          it->path().string(), " of the model itself; nothing was written");
  }
  refuse_existing_output(o.output, o.overwrite, "choose another --output, or pass --overwrite to replace it");
}

int run_score(const ScoreOptions& o) {
  check(!o.grads || !o.output.empty(), "--grads needs --output FILE.safetensors to write the gradients to");
  check_output_path(o);
  Communicator& world = world_communicator();
  const TextConfig text = load_config(o.model).text;
  const ParallelSetup par = make_parallel_setup(world, text.enable_moe_block ? text.num_experts : 0, o.ep,
                                                dispatcher_from_name(o.dispatcher));
  check(o.device == "cpu" || o.ep == 1, "--device cuda runs one process on one GPU so far (no --ep)");
  const DType dtype = compute_dtype(o.dtype, o.device);
  Allocator& device = device_allocator(o.device, "score");
  Gemma4Model model = load_gemma4_model(o.model, par.experts);
  const std::string bad = non_finite_weight(model);
  check(bad.empty(), "weight ", bad, " of ", o.model, " is NaN or infinite: no loss is computed");
  model.dispatcher = par.dispatcher.get();
  const bool on_gpu = device.device() != Device::cpu;
  place_model(model, device, dtype, "score", o.grads ? 4.0 : 0.0, o.grads ? " with f32 gradients" : "");
  const Json input = read_json_file(o.input);
  Batch full = parse_score_input(input, model.config.text.vocab_size, o.input);
  // Images: the vision tower (frozen) turns them into the soft tokens of their placeholders.
  const std::vector<std::string> image_paths =
      parse_score_images(input, full, o.input, std::filesystem::path(o.input).parent_path().string());
  Tensor soft, d_soft;
  if (!full.mm_token_type.empty()) {
    check(model.config.vision.has_value(), "the input has images but the model at ", o.model,
          " has no vision_config (", o.input, ")");
    check(par.groups.dp->size() == 1 && par.groups.ep_size == 1,
          "score with images runs in one process so far (no mpirun)");
    std::vector<DocumentImage> images;
    std::size_t next = 0;
    for_each_image_run(full, [&](std::int64_t, std::int64_t n) {
      images.push_back({image_paths[next++], n});
    });
    soft = ImageEncoder(model.config, o.model, device, dtype).soft_tokens(images);
  }
  const Tensor* image_tokens = full.mm_token_type.empty() ? nullptr : &soft;
  Communicator& dp = *par.groups.dp;
  check(full.batch_size >= dp.size(), "the batch has ", full.batch_size, " rows, fewer than the ", dp.size(),
        " data-parallel replicas (ranks / --ep)");
  const Batch batch =
      dp.size() > 1 ? batch_rows(full, row_block(full.batch_size, dp.size(), dp.rank())) : full;
  const ForwardResult out = gemma4_forward(model, batch, false, image_tokens);
  LossResult loss = batch_loss(model, batch, out.logits);
  dp.all_reduce_sum(&loss.loss_sum, 1);
  dp.all_reduce_sum(&loss.num_tokens, 1);
  const Tensor host_logits = on_gpu ? out.logits.to(host_allocator()) : out.logits;
  const Tensor logits = dp.size() > 1 ? gather_logits(dp, host_logits, full.batch_size) : host_logits;
  std::vector<std::pair<std::string, Tensor>> tensors = {{"logits", logits}};
  if (o.grads) {
    // Gradients of the mean loss over the whole batch (global token count), summed over the DP replicas
    // (expert slices over their EP replicas, which are the same group), expert slices then gathered over the
    // EP group; in the checkpoint's own names and layout.
    Gemma4Weights grads = zeros_like(model.config, model.weights);
    if (on_gpu) move_weights(model.config, grads, device);
    gemma4_forward_backward(model, batch, grads, static_cast<double>(loss.num_tokens), false, 0, image_tokens,
                            image_tokens ? &d_soft : nullptr);
    if (on_gpu) move_weights(model.config, grads, host_allocator());
    if (dp.size() > 1)
      for_each_parameter(model.config, grads, [&](const std::string&, Tensor& g) {
        dp.all_reduce_sum(g.f32(), static_cast<std::size_t>(g.numel()));
      });
    if (par.groups.ep_size > 1) {
      for (const LayerSpec& s : model.config.text.layers) {
        if (!s.moe) continue;
        MoeWeights& m = grads.layers[s.index].moe;
        m.gate_and_up = all_gather_experts(*par.groups.ep, m.gate_and_up, text.num_experts);
        m.down = all_gather_experts(*par.groups.ep, m.down, text.num_experts);
      }
    }
    if (world.rank() == 0)
      for (auto& [name, g] : gradients_in_checkpoint_layout(model.config, grads, Checkpoint::open(o.model)))
        tensors.emplace_back("grad." + name, g);
  }
  const double mean = loss.num_tokens ? loss.loss_sum / static_cast<double>(loss.num_tokens) : 0.0;
  check(std::isfinite(mean), "the loss is ", mean, " although every weight of ", o.model,
        " is finite (an overflow in the forward pass); nothing was written");
  if (world.rank() != 0) return 0;
  if (!o.output.empty()) write_safetensors(o.output, tensors);
  Json line = {{"loss", loss.num_tokens ? Json(mean) : Json(nullptr)}, {"num_tokens", loss.num_tokens}};
  std::printf("%s\n", line.dump().c_str());
  return 0;
}

}  // namespace

Action register_score(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "score",
      "Run the model on a batch and print {\"loss\": <mean causal-LM loss>, \"num_tokens\": <tokens "
      "counted>} as one JSON line (loss null when no label counts). NaN or Inf weights, or a non-finite "
      "loss, "
      "are an error (exit 2). The checkpoint may be in either Hugging Face layout; no conversion is needed.");
  auto o = std::make_shared<ScoreOptions>();
  cmd->add_option("--model", o->model, "checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option(
         "--input", o->input,
         "JSON file: {\"input_ids\": [[...]], \"attention_mask\": [[...]], \"position_ids\": [[...]], "
         "\"labels\": [[...]]}; all but input_ids optional; labels default to input_ids; -100 is ignored")
      ->required();
  cmd->add_option("--output", o->output,
                  "write the logits (F32 [B, S, V]) to this .safetensors file (atomically)");
  cmd->add_flag("--overwrite", o->overwrite, "replace an existing --output file (never one of the model's)");
  cmd->add_flag("--grads", o->grads,
                "also write grad.<name> for every trainable tensor (needs the backward pass)");
  cmd->add_option(
      "--ep", o->ep,
      "expert-parallel size under mpirun: groups of this many consecutive ranks share the experts "
      "(must divide the number of experts and the number of ranks); default 1");
  cmd->add_option(
      "--dispatcher", o->dispatcher,
      "how tokens reach experts on other ranks: alltoall (DeepEP semantics, default) or allgather "
      "(NeMo's torch dispatcher)");
  cmd->add_option(
      "--device", o->device,
      "cpu (default) or cuda: where the model runs; cuda runs every op on one GPU, in one process so far");
  cmd->add_option(
      "--dtype", o->dtype,
      "compute dtype: auto (default: f32 on cpu, bf16 on cuda), f32, or bf16 (cuda only: bf16 weights "
      "and activations with fp32 arithmetic inside each op; the router, logits, loss and every "
      "gradient written stay f32)");
  return [o] { return run_score(*o); };
}

}  // namespace g4::cli
