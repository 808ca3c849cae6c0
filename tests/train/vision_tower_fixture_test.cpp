// The vision tower and embed_vision (model/vision_tower.h) against transformers 5.17.0 in float64
// (tests/fixtures/vision_tower, tools/make_vision_fixture.py): two images of different sizes, 2 encoder
// layers with GQA, 2x2 pooling and standardisation; the tower's output and the soft tokens within 1e-5
// relative.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "model/forward_context.h"
#include "model/gemma4_model.h"
#include "model/gemma4_training.h"
#include "model/vision_tower.h"
#include "model/weight_layout.h"
#include "test_paths.h"
#include "train/checkpoint_layout.h"
#include "train/model_loading.h"
#include "train/presets.h"
#include "train/train_checkpoint.h"
#include "train/vision_loading.h"

namespace g4 {
namespace {

// ||a − b|| / ||b|| in double (Frobenius).
double relative_error(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  const Tensor bf = b.dtype() == DType::f64 ? b : b.to_f32();
  double diff = 0, norm = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double want = bf.dtype() == DType::f64 ? bf.f64()[i] : bf.f32()[i];
    diff += (a.f32()[i] - want) * (a.f32()[i] - want);
    norm += want * want;
  }
  return std::sqrt(diff / norm);
}

// A fixture image's patch positions [N, 2] as its columns and rows.
std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> columns_and_rows(const Tensor& positions) {
  std::vector<std::int64_t> xs, ys;
  for (std::int64_t p = 0; p < positions.dim(0); ++p) {
    xs.push_back(positions.i64()[2 * p]);
    ys.push_back(positions.i64()[2 * p + 1]);
  }
  return {xs, ys};
}

class VisionTower : public ::testing::TestWithParam<std::string> {};

TEST_P(VisionTower, MatchesTransformersInFloat64) {
  const std::string dir = test::source_path("tests/fixtures/" + GetParam());
  const ModelConfig config = load_config(dir);
  ASSERT_TRUE(config.vision.has_value());
  const VisionWeights weights = load_vision_weights(config, Checkpoint::open(dir));
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  auto ref = [&](const std::string& name) { return expected->read(*expected->find(name)); };
  for (int image = 0; image < 2; ++image) {
    SCOPED_TRACE("image " + std::to_string(image));
    const std::string i = std::to_string(image);
    const Tensor patches = ref("pixel_values." + i).to_f32();
    const auto [xs, ys] = columns_and_rows(ref("position_ids." + i));
    const VisionOutput out = vision_forward(*config.vision, weights, patches, xs, ys);
    const Tensor tower = ref("tower." + i), soft = ref("soft_tokens." + i);
    ASSERT_EQ(out.features.shape(), tower.shape());
    ASSERT_EQ(out.soft_tokens.shape(), soft.shape());
    const double tower_err = relative_error(out.features, tower),
                 soft_err = relative_error(out.soft_tokens, soft);
    EXPECT_LE(tower_err, 1e-5);
    EXPECT_LE(soft_err, 1e-5);
    EXPECT_TRUE(std::isfinite(tower_err) && std::isfinite(soft_err));
    std::printf("image %d: tower %.2e, soft tokens %.2e relative to float64\n", image, tower_err, soft_err);
  }
}

// The tower's backward: the gradient of Σ soft_tokens · d_soft_tokens over both images, for every trainable
// vision and embed_vision tensor, within 1e-4 relative of float64 (the fixture tests' bound for gradients).
TEST_P(VisionTower, GradientsMatchTransformersInFloat64) {
  const std::string dir = test::source_path("tests/fixtures/" + GetParam());
  const ModelConfig config = load_config(dir);
  VisionWeights weights = load_vision_weights(config, Checkpoint::open(dir));
  VisionWeights grads = vision_zeros_like(weights);
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  auto ref = [&](const std::string& name) {
    const TensorInfo* info = expected->find(name);
    EXPECT_NE(info, nullptr) << name;
    return expected->read(*info);
  };
  for (int image = 0; image < 2; ++image) {
    const std::string i = std::to_string(image);
    const auto [xs, ys] = columns_and_rows(ref("position_ids." + i));
    VisionTape tape;
    vision_forward(*config.vision, weights, ref("pixel_values." + i).to_f32(), xs, ys, &tape);
    vision_backward(*config.vision, weights, tape, ref("d_soft_tokens." + i).to_f32(), grads);
  }
  int checked = 0;
  double worst = 0;
  for_each_vision_parameter(grads, [&](const std::string& name, Tensor& g) {
    const double err = relative_error(g, ref("grad." + name));
    EXPECT_LE(err, 1e-4) << name;
    EXPECT_TRUE(std::isfinite(err)) << name;
    worst = std::max(worst, err);
    ++checked;
  });
  EXPECT_EQ(checked, 29);  // every gradient the fixture holds
  std::printf("vision gradients: %d tensors, worst %.2e relative to float64\n", checked, worst);
}

// The whole model on text around both images: soft tokens in place of the placeholders, and on sliding layers
// the images' tokens seeing their later tokens (use_bidirectional_attention "vision", window 4 < both
// images).
TEST_P(VisionTower, ImageTextLogitsMatchTransformersInFloat64) {
  const std::string dir = test::source_path("tests/fixtures/" + GetParam());
  const Gemma4Model model = load_gemma4_model(dir);
  ASSERT_TRUE(model.config.vision.has_value());
  const VisionWeights weights = load_vision_weights(model.config, Checkpoint::open(dir));
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  auto ref = [&](const std::string& name) { return expected->read(*expected->find(name)); };
  std::vector<Tensor> per_image;
  std::int64_t soft_total = 0;
  for (int image = 0; image < 2; ++image) {
    const std::string i = std::to_string(image);
    const auto [xs, ys] = columns_and_rows(ref("position_ids." + i));
    per_image.push_back(
        vision_forward(*model.config.vision, weights, ref("pixel_values." + i).to_f32(), xs, ys).soft_tokens);
    soft_total += per_image.back().dim(0);
  }
  Tensor soft(DType::f32, {soft_total, model.config.text.hidden_size});
  for (std::int64_t at = 0; const Tensor& t : per_image) {
    std::copy(t.f32(), t.f32() + t.numel(), soft.f32() + at * soft.dim(1));
    at += t.dim(0);
  }
  const Tensor ids = ref("input_ids"), mm = ref("mm_token_type_ids");
  Batch batch;
  batch.batch_size = 1;
  batch.seq_len = ids.dim(1);
  batch.input_ids.assign(ids.i64(), ids.i64() + ids.numel());
  batch.labels = batch.input_ids;
  for (std::int64_t t = 0; t < batch.seq_len; ++t) {
    batch.position_ids.push_back(t);
    batch.mm_token_type.push_back(static_cast<std::uint8_t>(mm.i64()[t]));
  }
  const ForwardResult out = gemma4_forward(model, batch, false, &soft);
  const double err = relative_error(out.logits, ref("logits"));
  EXPECT_LE(err, 1e-5);
  EXPECT_TRUE(std::isfinite(err));
  std::printf("image-text logits: %.2e relative to float64\n", err);
  // Without the images' bidirectional edges the logits differ: the test sees the mask.
  if (model.config.text.use_bidirectional_attention == "vision") {
    Gemma4Model causal_only = model;
    causal_only.config.text.use_bidirectional_attention = "";
    EXPECT_GT(relative_error(gemma4_forward(causal_only, batch, false, &soft).logits, ref("logits")), 1e-3);
  }
  // A count of soft tokens that does not match the placeholders is an error.
  const Tensor fewer = soft.rows(0, soft_total - 1).clone();
  EXPECT_THROW(gemma4_forward(model, batch, false, &fewer), Error);
}

// Forward and backward of the whole model on the image-text row: the loss (no loss on the soft tokens), and
// the gradient of every text and vision parameter, the text loss flowing through the soft tokens into the
// tower, within 1e-4 relative of float64.
TEST_P(VisionTower, ImageTextGradientsMatchTransformersInFloat64) {
  const std::string dir = test::source_path("tests/fixtures/" + GetParam());
  const Gemma4Model model = load_gemma4_model(dir);
  VisionWeights weights = load_vision_weights(model.config, Checkpoint::open(dir));
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  auto ref = [&](const std::string& name) {
    const TensorInfo* info = expected->find(name);
    EXPECT_NE(info, nullptr) << name;
    return expected->read(*info);
  };
  std::vector<VisionTape> tapes(2);
  std::vector<std::int64_t> counts;
  std::vector<Tensor> per_image;
  for (int image = 0; image < 2; ++image) {
    const std::string i = std::to_string(image);
    const auto [xs, ys] = columns_and_rows(ref("position_ids." + i));
    per_image.push_back(vision_forward(*model.config.vision, weights, ref("pixel_values." + i).to_f32(), xs,
                                       ys, &tapes[image])
                            .soft_tokens);
    counts.push_back(per_image.back().dim(0));
  }
  const std::int64_t H = model.config.text.hidden_size;
  Tensor soft(DType::f32, {counts[0] + counts[1], H});
  std::copy(per_image[0].f32(), per_image[0].f32() + per_image[0].numel(), soft.f32());
  std::copy(per_image[1].f32(), per_image[1].f32() + per_image[1].numel(), soft.f32() + per_image[0].numel());
  const Tensor ids = ref("input_ids"), mm = ref("mm_token_type_ids"), labels = ref("labels");
  Batch batch;
  batch.batch_size = 1;
  batch.seq_len = ids.dim(1);
  batch.input_ids.assign(ids.i64(), ids.i64() + ids.numel());
  batch.labels.assign(labels.i64(), labels.i64() + labels.numel());
  for (std::int64_t t = 0; t < batch.seq_len; ++t) {
    batch.position_ids.push_back(t);
    batch.mm_token_type.push_back(static_cast<std::uint8_t>(mm.i64()[t]));
  }
  Gemma4Weights grads = zeros_like(model.config, model.weights);
  Tensor d_soft;
  const StepResult step = gemma4_forward_backward(model, batch, grads, 0, false, 0, &soft, &d_soft);
  const double loss = step.loss_sum / static_cast<double>(step.num_tokens);
  EXPECT_LE(std::fabs(loss - ref("loss").f64()[0]) / ref("loss").f64()[0], 1e-5);
  const Tensor hf_d_soft = ref("image_text_d_soft_tokens");
  const double d_soft_err = relative_error(d_soft, hf_d_soft);
  EXPECT_LE(d_soft_err, 1e-4) << "the gradient of the soft tokens";
  // The tower's own error, apart from what the text model's fp32 backward hands it: its backward from
  // transformers' exact d_soft_tokens.
  VisionWeights from_exact = vision_zeros_like(weights);
  const Tensor exact_d_soft = hf_d_soft.to_f32();
  for (int image = 0; image < 2; ++image)
    vision_backward(*model.config.vision, weights, tapes[image],
                    exact_d_soft.rows(image == 0 ? 0 : counts[0], counts[image]).clone(), from_exact);
  double tower_worst = 0;
  for_each_vision_parameter(from_exact, [&](const std::string& name, Tensor& g) {
    const double err = relative_error(g, ref("image_text_grad." + name));
    EXPECT_LE(err, 1e-4) << name << " (from transformers' d_soft_tokens)";
    tower_worst = std::max(tower_worst, err);
  });
  std::printf("soft tokens' gradient %.2e; the tower's gradients from transformers' exact one: worst %.2e\n",
              d_soft_err, tower_worst);
  VisionWeights vision_grads = vision_zeros_like(weights);
  for (int image = 0; image < 2; ++image)
    vision_backward(*model.config.vision, weights, tapes[image],
                    d_soft.rows(image == 0 ? 0 : counts[0], counts[image]).clone(), vision_grads);
  int checked = 0, expected_grads = 0;
  for (const TensorInfo& info : expected->tensors())
    expected_grads += info.name.rfind("image_text_grad.", 0) == 0;
  double worst = 0, vision_worst = 0;
  const auto compare = [&](const std::string& name, const Tensor& g, bool vision) {
    const double err = relative_error(g, ref("image_text_grad." + name));
    if (std::getenv("G4_PRINT_ERRORS")) std::printf("  %.2e %s\n", err, name.c_str());
    EXPECT_TRUE(std::isfinite(err)) << name;
    EXPECT_LE(err, 1e-4) << name;
    double& w = vision ? vision_worst : worst;
    w = std::max(w, err);
    ++checked;
  };
  for (auto& [name, g] : gradients_in_checkpoint_layout(model.config, grads, Checkpoint::open(dir)))
    compare(name, g, false);
  for_each_vision_parameter(vision_grads,
                            [&](const std::string& name, Tensor& g) { compare(name, g, true); });
  EXPECT_EQ(checked, expected_grads);  // every parameter gradient the fixture holds, text and vision
  std::printf("image-text gradients: %d tensors, worst text %.2e, worst vision %.2e relative to float64\n",
              checked, worst, vision_worst);
}

// What each query sees, against transformers' own masks (create_masks_for_vision_model) on image-text rows: a
// packed row of two documents with an image each, and left-padded rows; full layers causal, sliding layers
// with the images' later tokens inside the window.
TEST(VisionTowerErrors, AttentionMasksMatchTransformers) {
  const std::string dir = test::source_path("tests/fixtures/vision_tower");
  const ModelConfig config = load_config(dir);
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  auto find = [&](const std::string& name) { return expected->find(name); };
  for (const std::string c : {"packed", "padded"}) {
    const Tensor mm = expected->read(*find("mask." + c + ".mm"));
    Batch batch;
    batch.batch_size = mm.dim(0);
    batch.seq_len = mm.dim(1);
    batch.input_ids.assign(static_cast<std::size_t>(batch.tokens()), 5);
    batch.labels = batch.input_ids;
    for (std::int64_t t = 0; t < batch.tokens(); ++t) {
      batch.mm_token_type.push_back(static_cast<std::uint8_t>(mm.i64()[t]));
      batch.position_ids.push_back(t % batch.seq_len);
    }
    if (const TensorInfo* p = find("mask." + c + ".position_ids")) {
      const Tensor positions = expected->read(*p);
      batch.position_ids.assign(positions.i64(), positions.i64() + positions.numel());
      batch.explicit_position_ids = true;
    }
    if (const TensorInfo* a = find("mask." + c + ".attention_mask")) {
      const Tensor mask = expected->read(*a);
      for (std::int64_t t = 0; t < mask.numel(); ++t)
        batch.attention_mask.push_back(static_cast<std::uint8_t>(mask.i64()[t]));
    }
    const ForwardContext ctx = make_forward_context(config.text, batch);
    for (const auto& [kind, window] :
         {std::pair<std::string, int>{"full", 0}, {"sliding", config.text.sliding_window}}) {
      const Tensor want = expected->read(*find("mask." + c + "." + kind));
      const auto rows = attention_rows(ctx, window);
      int differences = 0, visible = 0;
      for (std::int64_t r = 0; r < batch.batch_size; ++r) {
        const RowBounds bounds = visible_row_bounds(rows[static_cast<std::size_t>(r)]);
        for (std::int64_t i = 0; i < batch.seq_len; ++i)
          for (std::int64_t j = 0; j < batch.seq_len; ++j) {
            const bool theirs = want.i64()[(r * batch.seq_len + i) * batch.seq_len + j] != 0;
            differences += bounds.visible(i, j) != theirs;
            visible += theirs;
          }
      }
      EXPECT_EQ(differences, 0) << c << " rows, " << kind << " layers";
      EXPECT_GT(visible, 0);
    }
  }
}

TEST(VisionTowerErrors, BadImagesAreErrors) {
  const std::string dir = test::source_path("tests/fixtures/vision_tower");
  const ModelConfig config = load_config(dir);
  const VisionWeights weights = load_vision_weights(config, Checkpoint::open(dir));
  const Tensor patches(DType::f32, {6, 12});
  const std::vector<std::int64_t> xs = {0, 1, 2, 0, 1, 2},
                                  ys = {0, 0, 0, 1, 1, 1};  // 3 x 2: not a multiple of 2
  EXPECT_THROW(vision_forward(*config.vision, weights, patches, xs, ys), Error);
  const Tensor wrong(DType::f32, {4, 10});
  const std::vector<std::int64_t> xs2 = {0, 1, 0, 1}, ys2 = {0, 0, 1, 1};
  EXPECT_THROW(vision_forward(*config.vision, weights, wrong, xs2, ys2), Error);
}

// Fine-tuning the language model of a vision-language checkpoint keeps its towers: every tensor outside the
// text model is carried, and a checkpoint written from the model holds it byte for byte.
TEST_P(VisionTower, CheckpointsKeepTheTowers) {
  const std::string dir = test::source_path(std::string("tests/fixtures/") + GetParam());
  Gemma4Model model = load_gemma4_model(dir);
  const Checkpoint source = Checkpoint::open(dir);
  std::size_t towers = 0;
  for (const std::string& name : source.names()) towers += is_text_model_tensor(model.config, name) ? 0 : 1;
  ASSERT_GT(towers, 0u);
  ASSERT_EQ(model.carried.size(), towers);
  const std::string out = test::scratch_dir(std::string("towers_") + GetParam()) + "/ckpt";
  save_hf_checkpoint(out, model, read_json_file(dir + "/config.json"), CheckpointOptions{});
  const Checkpoint saved = Checkpoint::open(out);
  for (const auto& [name, t] : model.carried) {
    ASSERT_TRUE(saved.contains(name)) << name;
    const Tensor back = saved.read(name);
    ASSERT_EQ(back.dtype(), source.info(name).dtype) << name;
    ASSERT_EQ(back.shape(), source.info(name).shape) << name;
    EXPECT_EQ(std::memcmp(back.bytes(), source.view(name).data, back.nbytes()), 0) << name;
  }
  EXPECT_EQ(saved.names(), source.names());
}

// `g4moe init` of a vision-language config writes the towers too (checkpoint names, as transformers expects).
TEST_P(VisionTower, InitialisedModelsHaveTheirTowers) {
  const std::string dir = test::source_path(std::string("tests/fixtures/") + GetParam());
  const Gemma4Model model = init_gemma4_model(read_json_file(dir + "/config.json"), 7);
  const auto expected = expected_vision_tensors(*model.config.vision, model.config.text.hidden_size);
  ASSERT_EQ(model.carried.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(model.carried[i].first, expected[i].first);
    EXPECT_EQ(model.carried[i].second.shape(), expected[i].second);
  }
  Gemma4Model saved = model;
  const std::string out = test::scratch_dir(std::string("init_towers_") + GetParam()) + "/ckpt";
  save_hf_checkpoint(out, saved, read_json_file(dir + "/config.json"), CheckpointOptions{});
  const VisionWeights w = load_vision_weights(model.config, Checkpoint::open(out));
  EXPECT_EQ(w.layers.size(), static_cast<std::size_t>(model.config.vision->num_hidden_layers));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, VisionTower,
                         ::testing::Values("vision_tower", "vision_e2b", "vision_moe"));

}  // namespace
}  // namespace g4
