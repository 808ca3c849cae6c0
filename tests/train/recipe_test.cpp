// Training recipes: YAML plus key=value overrides into the typed Recipe, and the errors a user gets for bad
// files (each one line naming the file; found by tests/fuzz/fuzz_recipe: invalid UTF-8 once escaped as a
// nlohmann exception instead of a g4::Error).
#include "train/recipe.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "core/error.h"
#include "test_paths.h"

namespace g4 {
namespace {

std::string write_recipe(const std::string& text) {
  const std::string path = test::scratch_dir("recipe") + "/recipe.yaml";
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The message of the g4::Error `f` throws ("" if it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
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
  std::string msg = error_of([&] { load_recipe(typo, {}); });
  all.push_back(msg);
  EXPECT_NE(msg.find("unknown recipe key \"train.stpes\""), std::string::npos) << msg;
  EXPECT_NE(msg.find(typo), std::string::npos) << msg;

  const std::string latin1 = write_recipe("data:\n  path: caf\xe9.jsonl\n");
  msg = error_of([&] { load_recipe(latin1, {}); });
  all.push_back(msg);
  EXPECT_NE(msg.find("not valid UTF-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find(latin1), std::string::npos) << msg;

  msg = error_of([&] { load_recipe("", {"data.path=x", "train.steps=\xff"}); });
  all.push_back(msg);
  EXPECT_NE(msg.find("not valid UTF-8"), std::string::npos) << msg;

  const std::string broken = write_recipe("data: [unclosed\n");
  msg = error_of([&] { load_recipe(broken, {}); });
  all.push_back(msg);
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;

  for (const std::string& m : all) EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

}  // namespace
}  // namespace g4
