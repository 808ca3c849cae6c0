// cmd_score.cpp: `g4moe score --model DIR --input FILE.json [--output OUT.safetensors] [--grads]`:
// the causal-LM loss of a batch, printed as one JSON line, and optionally the logits as safetensors.
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"
#include "data/score_input.h"
#include "io/safetensors_writer.h"
#include "model/checkpoint_gradients.h"
#include "model/gemma4_model.h"
#include "model/gemma4_training.h"
#include "ops/cpu/cross_entropy.h"

namespace g4::cli {

namespace {

struct ScoreOptions {
  std::string model, input, output;
  bool grads = false;
};

int run_score(const ScoreOptions& o) {
  check(!o.grads || !o.output.empty(), "--grads needs --output FILE.safetensors to write the gradients to");
  const Gemma4Model model = load_gemma4_model(o.model);
  const Batch batch = read_score_input(o.input, model.config.text.vocab_size);
  const ForwardResult out = gemma4_forward(model, batch);
  const LossResult loss = causal_lm_loss(out.logits.f32(), batch.labels.data(), batch.batch_size,
                                         batch.seq_len, model.config.text.vocab_size);
  std::vector<std::pair<std::string, Tensor>> tensors = {{"logits", out.logits}};
  if (o.grads) {
    // Gradients of the mean loss, in the checkpoint's own names and layout (Hugging Face parametrisation).
    Gemma4Weights grads = zeros_like(model.config, model.weights);
    gemma4_forward_backward(model, batch, grads);
    for (auto& [name, g] : gradients_in_checkpoint_layout(model.config, grads, Checkpoint::open(o.model)))
      tensors.emplace_back("grad." + name, g);
  }
  if (!o.output.empty()) write_safetensors(o.output, tensors);
  const double mean = loss.num_tokens ? loss.loss_sum / static_cast<double>(loss.num_tokens) : 0.0;
  Json line = {{"loss", loss.num_tokens ? Json(mean) : Json(nullptr)}, {"num_tokens", loss.num_tokens}};
  std::printf("%s\n", line.dump().c_str());
  return 0;
}

}  // namespace

Action register_score(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "score",
      "Run the model on a batch and print {\"loss\": <mean causal-LM loss>, \"num_tokens\": <tokens "
      "counted>} "
      "as one JSON line. The checkpoint may be in either Hugging Face layout; no conversion is needed.");
  auto o = std::make_shared<ScoreOptions>();
  cmd->add_option("--model", o->model, "checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option(
         "--input", o->input,
         "JSON file: {\"input_ids\": [[...]], \"attention_mask\": [[...]], \"position_ids\": [[...]], "
         "\"labels\": [[...]]}; all but input_ids optional; labels default to input_ids; -100 is ignored")
      ->required();
  cmd->add_option("--output", o->output,
                  "write the logits (F32 [B, S, V]) to this .safetensors file (atomically)");
  cmd->add_flag("--grads", o->grads,
                "also write grad.<name> for every trainable tensor (needs the backward pass)");
  return [o] { return run_score(*o); };
}

}  // namespace g4::cli
