// Training recipes: YAML plus key=value overrides into the typed Recipe, aliases, ranges, resume checks, and
// the errors a user gets for bad files (each one line naming the key and the file; found by
// tests/fuzz/fuzz_recipe: invalid UTF-8 once escaped as a nlohmann exception instead of a g4::Error).
#include "train/recipe.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_errors.h"
#include "test_paths.h"

namespace g4 {
namespace {

std::string write_recipe(const std::string& text) {
  const std::string path = test::scratch_dir("recipe") + "/recipe.yaml";
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(Recipe, YamlValuesAndOverridesReachTheTypedFields) {
  const std::string path = write_recipe("data:\n  path: corpus.jsonl\ntrain:\n  steps: 7\n  lr: 0.5\n");
  const Recipe r = load_recipe(path, {"train.steps=9", "train.freeze=[\"embed\"]", "output.dir=out dir"});
  EXPECT_EQ(r.data_path, "corpus.jsonl");
  EXPECT_EQ(r.steps, 9);  // the override wins
  EXPECT_DOUBLE_EQ(r.lr, 0.5);
  ASSERT_EQ(r.freeze.size(), 1u);
  EXPECT_EQ(r.freeze[0], "embed");
  EXPECT_EQ(r.output_dir, "out dir");
}

TEST(Recipe, BadInputIsOneLineNamingTheFile) {
  const std::string typo = write_recipe("data:\n  path: x\ntrain:\n  stpes: 7\n");
  std::vector<std::string> all;
  std::string msg = test::error_of([&] { load_recipe(typo, {}); });
  all.push_back(msg);
  EXPECT_NE(msg.find("unknown recipe key \"train.stpes\""), std::string::npos) << msg;
  EXPECT_NE(msg.find(typo), std::string::npos) << msg;

  const std::string latin1 = write_recipe("data:\n  path: caf\xe9.jsonl\n");
  msg = test::error_of([&] { load_recipe(latin1, {}); });
  all.push_back(msg);
  EXPECT_NE(msg.find("not valid UTF-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find(latin1), std::string::npos) << msg;

  msg = test::error_of([&] { load_recipe("", {"data.path=x", "train.steps=\xff"}); });
  all.push_back(msg);
  EXPECT_NE(msg.find("not valid UTF-8"), std::string::npos) << msg;

  const std::string broken = write_recipe("data: [unclosed\n");
  msg = test::error_of([&] { load_recipe(broken, {}); });
  all.push_back(msg);
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;

  for (const std::string& m : all) EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

// Expects `f` to throw a one-line g4::Error holding every one of `parts`.
template <class F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  const std::string msg = test::error_of(f);
  ASSERT_FALSE(msg.empty()) << "no error; expected: " << parts.at(0);
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const std::string& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "missing \"" << p << "\" in " << msg;
}

TEST(Recipe, ASectionMustBeAMapping) {
  for (const std::string section : {"train", "data"}) {
    const std::string path = write_recipe("model:\n  seed: 1\n" + section + ": 5\n");
    expect_error([&] { load_recipe(path, {"data.path=x"}); },
                 {"section \"" + section + "\"", "mapping", path});
  }
  const std::string list = write_recipe("data: [1]\n");
  expect_error([&] { load_recipe(list, {}); }, {"section \"data\"", list});
  // An empty section (every key commented out) is no error.
  EXPECT_EQ(load_recipe(write_recipe("data:\n  path: x\ntrain:\n"), {}).steps, 100);
}

TEST(Recipe, ADocumentThatIsNotAMappingIsAClearError) {
  for (const std::string text : {"- a\n- b\n", "5\n", "just words\n"}) {
    const std::string path = write_recipe(text);
    expect_error([&] { load_recipe(path, {"data.path=x"}); },
                 {"a recipe must be a mapping of sections", path});
  }
  const std::string list = write_recipe("- a\n");
  expect_error([&] { load_recipe(list, {"train.steps=5"}); },
               {"a recipe must be a mapping of sections", list});
}

TEST(Recipe, BadOverridesAreClearErrors) {
  expect_error([] { load_recipe("", {"data.path=x", "train=5"}); }, {"section \"train\"", "command line"});
  expect_error(
      [] {
        load_recipe("", {"data.path=x", "train.steps=5", "train.steps.x=1"});
      },
      {"\"train.steps.x\"", "train.steps is a value, not a section", "command line"});
  expect_error(
      [] {
        load_recipe("", {"data.path=x", "train.steps={a: 1}"});
      },
      {"train.steps", "not a mapping", "command line"});
  // A mapping value fills a section.
  EXPECT_EQ(load_recipe("", {"data.path=x", "train={steps: 7}"}).steps, 7);
}

TEST(Recipe, ValuesOutOfRangeNameTheKeyAndTheSource) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"train.beta1=1", "train.beta1"},
      {"train.beta2=-0.1", "train.beta2"},
      {"train.beta2=1.0", "train.beta2"},
      {"train.eps=-1e-8", "train.eps"},
      {"train.max_grad_norm=-1", "train.max_grad_norm"},
      {"train.weight_decay=-0.1", "train.weight_decay"},
      {"train.lr=0", "train.lr"},
      {"train.lr=inf", "train.lr"},
      {"train.lr=nan", "train.lr"},
      {"train.min_lr_ratio=1.5", "train.min_lr_ratio"},
      {"train.min_lr_ratio=-0.5", "train.min_lr_ratio"},
      {"train.log_every=0", "train.log_every"},
      {"train.warmup_steps=101", "train.warmup_steps"},
      {"data.eval_fraction=1", "data.eval_fraction"},
      {"train.warmup_ratio=1", "train.warmup_ratio"},
      {"train.eps=inf", "train.eps"},
      {"train.device=gpu", "train.device"},
      {"train.dtype=f16", "train.dtype"},
      {"train.dtype=bf16", "train.dtype"},  // bf16 needs train.device cuda
  };
  for (const auto& [override_, key] : bad)
    expect_error([&] { load_recipe("", {"data.path=x", override_}); }, {key, "command line"});
  const std::string path = write_recipe("data:\n  path: x\ntrain:\n  beta1: 1.5\n");
  expect_error([&] { load_recipe(path, {}); }, {"train.beta1", path});
  // The source of the value is named: the override, not the file.
  expect_error(
      [&] {
        load_recipe(path, {"train.beta1=0.9", "train.beta2=2"});
      },
      {"train.beta2", "command line"});
  // The edges of the ranges are accepted.
  const Recipe r = load_recipe(
      "", {"data.path=x", "train.beta1=0", "train.beta2=0", "train.eps=0", "train.max_grad_norm=0",
           "train.weight_decay=0", "train.min_lr_ratio=1", "train.warmup_steps=100"});
  EXPECT_EQ(r.warmup_steps, 100);
}

TEST(Recipe, NestedAliasesStopAtTheNodeBound) {
  // "Billion laughs": 9 levels of 10 aliases each would expand to 10^9 strings.
  std::string text =
      "a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n";
  for (int i = 1; i <= 9; ++i) {
    const std::string name = std::to_string(i), previous = std::to_string(i - 1);
    text.append("a").append(name).append(": &a").append(name).append(" [*a").append(previous);
    for (int j = 1; j < 10; ++j) text.append(", *a").append(previous);
    text.append("]\n");
  }
  const std::string path = write_recipe(text);
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { load_recipe(path, {}); }, {"more than 100000 nodes", path});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(Recipe, DeepNestingAndHugeFilesAreRefused) {
  const std::string deep = write_recipe(std::string(100, '[') + std::string(100, ']') + "\n");
  expect_error([&] { load_recipe(deep, {}); }, {"deeper than 64", deep});
  const std::string big = write_recipe("# " + std::string(17 << 20, 'x') + "\n");
  expect_error([&] { load_recipe(big, {}); }, {"larger than 16 MiB", big});
}

TEST(Recipe, TheDeviceKeyAndItsTopLevelAlias) {
  const std::string path = write_recipe("data:\n  path: x\ndevice: cuda\n");
  const Recipe r = load_recipe(path, {});
  EXPECT_EQ(r.device, "cuda");
  EXPECT_EQ(r.dtype, "auto");
  EXPECT_EQ(load_recipe("", {"data.path=x", "train.device=cuda", "train.dtype=bf16"}).dtype, "bf16");
  EXPECT_EQ(load_recipe("", {"data.path=x"}).device, "cpu");
}

TEST(Recipe, AliasesOfHfTrainerNamesReachTheCanonicalKeys) {
  const std::string path = write_recipe(
      "data:\n  path: x\ntrain:\n  max_steps: 40\n  learning_rate: 0.01\n  gradient_accumulation_steps: 3\n"
      "  gradient_checkpointing: true\n  per_device_train_batch_size: 2\n  eval_steps: 5\n  logging_steps: "
      "2\n"
      "output:\n  output_dir: out\n  save_steps: 20\n");
  const Recipe r = load_recipe(path, {});
  EXPECT_EQ(r.steps, 40);
  EXPECT_DOUBLE_EQ(r.lr, 0.01);
  EXPECT_EQ(r.grad_accumulation, 3);
  EXPECT_TRUE(r.recompute);
  EXPECT_EQ(r.batch_size, 2);
  EXPECT_EQ(r.eval_every, 5);
  EXPECT_EQ(r.log_every, 2);
  EXPECT_EQ(r.output_dir, "out");
  EXPECT_EQ(r.save_every, 20);
  // An override of the canonical key replaces the file's alias.
  EXPECT_EQ(load_recipe(path, {"train.steps=9"}).steps, 9);
  const std::string help = recipe_keys_help();
  EXPECT_NE(help.find("train.steps = 100  (alias: train.max_steps)"), std::string::npos) << help;
}

TEST(Recipe, AnAliasBesideItsKeyIsAnError) {
  const std::string both = write_recipe("data:\n  path: x\ntrain:\n  steps: 5\n  max_steps: 6\n");
  expect_error([&] { load_recipe(both, {}); }, {"train.max_steps", "train.steps", "give one", both});
  expect_error(
      [] {
        load_recipe("", {"data.path=x", "train.lr=0.1", "train.learning_rate=0.2"});
      },
      {"train.learning_rate", "train.lr", "command line"});
  const std::string twice = write_recipe("data:\n  path: x\ntrain:\n  steps: 5\n  steps: 6\n");
  expect_error([&] { load_recipe(twice, {}); }, {"\"steps\" is given twice", twice});
}

TEST(Recipe, WarmupRatioSetsWarmupStepsRoundedUp) {
  EXPECT_EQ(load_recipe("", {"data.path=x", "train.steps=10", "train.warmup_ratio=0.25"}).warmup_steps, 3);
  EXPECT_EQ(load_recipe("", {"data.path=x"}).warmup_ratio, 0.0);
  expect_error(
      [] {
        load_recipe("", {"data.path=x", "train.warmup_ratio=0.1", "train.warmup_steps=50"});
      },
      {"train.warmup_steps", "train.warmup_ratio", "give one"});
  // to_json's output (the ratio and the steps it gave) reads back.
  const Recipe r = load_recipe("", {"data.path=x", "train.steps=10", "train.warmup_ratio=0.25"});
  EXPECT_EQ(recipe_from_json(r.to_json(), "saved").warmup_steps, 3);
}

TEST(Recipe, UnknownKeysSuggestTheClosestKnownOne) {
  expect_error([] { load_recipe("", {"data.path=x", "train.stpes=3"}); }, {"did you mean \"train.steps\"?"});
  expect_error(
      [] {
        load_recipe("", {"data.path=x", "train.seq_len=3"});
      },
      {"did you mean \"data.seq_len\"?"});
  expect_error(
      [] {
        load_recipe("", {"data.path=x", "train.max_stpes=3"});
      },
      {"did you mean \"train.max_steps\"?"});
  expect_error(
      [] {
        load_recipe("", {"data.path=x", "output.save_totl_limit=3"});
      },
      {"did you mean \"output.save_total_limit\"?"});
  const std::string msg = test::error_of([] { load_recipe("", {"data.path=x", "zzz.qqqqqqq=3"}); });
  EXPECT_NE(msg.find("unknown recipe key \"zzz.qqqqqqq\""), std::string::npos) << msg;
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;
}

TEST(Recipe, NewKeysForEvalFileCheckpointLimitAndOverwrite) {
  const Recipe defaults = load_recipe("", {"data.path=x"});
  EXPECT_EQ(defaults.eval_data_path, "");
  EXPECT_EQ(defaults.save_total_limit, 0);
  EXPECT_FALSE(defaults.overwrite);
  const Recipe r = load_recipe(
      "", {"data.path=x", "data.eval_path=e.jsonl", "output.save_total_limit=2", "output.overwrite=true"});
  EXPECT_EQ(r.eval_data_path, "e.jsonl");
  EXPECT_EQ(r.save_total_limit, 2);
  EXPECT_TRUE(r.overwrite);
  const Json j = r.to_json();
  EXPECT_EQ(j.at("data.eval_path"), "e.jsonl");
  EXPECT_EQ(j.at("output.save_total_limit"), 2);
  EXPECT_EQ(j.at("output.overwrite"), true);
  expect_error(
      [] {
        load_recipe("", {"data.path=x", "output.save_total_limit=-1"});
      },
      {"output.save_total_limit"});
}

TEST(Recipe, ResumeConflictsListTheFixedKeysThatChanged) {
  const Recipe saved = load_recipe("", {"data.path=a.jsonl", "data.seq_len=64", "train.steps=10"});
  // Keys that may change (steps, lr) are no conflict; a round trip through JSON text changes nothing.
  const Recipe longer =
      load_recipe("", {"data.path=a.jsonl", "data.seq_len=64", "train.steps=20", "train.lr=0.1"});
  EXPECT_TRUE(resume_conflicts(Json::parse(saved.to_json().dump()), longer).empty());
  const Recipe changed = load_recipe("", {"data.path=b.jsonl", "data.seq_len=32", "train.batch_size=4"});
  EXPECT_EQ(resume_conflicts(saved.to_json(), changed),
            (std::vector<std::string>{"data.path", "data.seq_len", "train.batch_size"}));
  // Keys an older checkpoint did not save are no conflict.
  Json older = saved.to_json();
  older.erase("data.eval_path");
  older.erase("data.seq_len");
  EXPECT_EQ(resume_conflicts(older, changed), (std::vector<std::string>{"data.path", "train.batch_size"}));
  // A malformed saved recipe does not throw.
  EXPECT_EQ(resume_conflicts(Json::array({1, 2}), changed), (std::vector<std::string>{"recipe"}));
  EXPECT_EQ(resume_conflicts(Json(), changed), (std::vector<std::string>{"recipe"}));
  Json odd = saved.to_json();
  odd["data.seq_len"] = "sixty-four";
  odd["model.seed"] = Json::array();
  EXPECT_EQ(resume_conflicts(odd, saved), (std::vector<std::string>{"model.seed", "data.seq_len"}));
}

}  // namespace
}  // namespace g4
