// Ranged expert reads (expert parallelism): a rank that loads a checkpoint with an expert range copies only
// its experts' rows of the fused expert tensors out of the mapped files, and gets exactly the slice of the
// full load. The criterion is the reader's byte count (SafetensorsFile::bytes_copied, which every copy out of
// a mapping goes through): ranged bytes == full bytes − the other ranks' share of every [E, ...] tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors_writer.h"
#include "model/gemma4_weights.h"
#include "moe/state_dict_adapter.h"
#include "test_paths.h"
#include "train/model_loading.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0;
}

bool is_expert_rows(const std::string& name) {  // the [E, ...] tensors a range cuts, in either layout
  for (const char* k : {"experts.gate_up_proj", "experts.down_proj", "router.per_expert_scale",
                        "moe.experts.gate_and_up_projs", "moe.experts.down_projs"})
    if (name.size() >= std::strlen(k) &&
        name.compare(name.size() - std::strlen(k), std::string::npos, k) == 0)
      return true;
  return false;
}

// The checkpoint in g4moe's native layout (experts [E, H, 2I] / [E, I, H]), written next to the fixture's
// config.
std::string native_copy(const std::string& hf_dir) {
  const std::string dir = test::scratch_dir("ranged_native");
  const Checkpoint ckpt = Checkpoint::open(hf_dir);
  const ModelConfig config = load_config(hf_dir);
  StateDict hf;
  for (const std::string& n : ckpt.names()) hf[n] = ckpt.read(n);
  const StateDict native =
      gemma4_moe_from_hf(hf, AdapterOptions{1, 0, [](const std::string&) {}, config.text_prefix});
  write_safetensors(dir + "/model.safetensors", {native.begin(), native.end()});
  fs::copy_file(hf_dir + "/config.json", dir + "/config.json");
  return dir;
}

void check_ranged_loads(const std::string& dir) {
  const ModelConfig config = load_config(dir);
  const std::int64_t E = config.text.num_experts;
  const Checkpoint full_ckpt = Checkpoint::open(dir);
  Gemma4Weights full = load_gemma4_weights(config, full_ckpt);
  const std::uint64_t full_bytes = full_ckpt.bytes_copied();
  std::uint64_t expert_bytes = 0;  // every [E, ...] tensor's bytes; each expert owns 1/E of them
  for (const std::string& n : full_ckpt.names())
    if (is_expert_rows(n)) expert_bytes += full_ckpt.info(n).end - full_ckpt.info(n).begin;
  ASSERT_GT(expert_bytes, 0u) << dir;
  ASSERT_EQ(expert_bytes % static_cast<std::uint64_t>(E), 0u);

  for (std::int64_t ep : {2, 4}) {
    for (std::int64_t r = 0; r < ep; ++r) {
      const ExpertRange range = expert_range(E, ep, r);
      const Checkpoint ckpt = Checkpoint::open(dir);
      Gemma4Weights part = load_gemma4_weights(config, ckpt, nullptr, range);
      // Exactly the local share of the expert tensors was copied, plus everything else once.
      const std::uint64_t others =
          expert_bytes / static_cast<std::uint64_t>(E) * static_cast<std::uint64_t>(E - range.count);
      EXPECT_EQ(ckpt.bytes_copied(), full_bytes - others) << dir << " ep " << ep << " rank " << r;
      // And the values are the full load's slice, bit for bit (the per_expert_scale fold included).
      std::vector<std::pair<std::string, Tensor*>> mine;
      for_each_parameter(config, part, [&](const std::string& n, Tensor& t) { mine.emplace_back(n, &t); });
      std::size_t i = 0;
      for_each_parameter(config, full, [&](const std::string& n, Tensor& t) {
        ASSERT_EQ(mine[i].first, n);
        const bool expert = n.find(".moe.experts.") != std::string::npos;
        EXPECT_TRUE(same_bytes(*mine[i].second, expert ? slice_experts(t, range) : t))
            << dir << " " << n << " ep " << ep << " rank " << r;
        ++i;
      });
    }
  }
}

TEST(RangedExpertLoad, HfLayoutReadsOnlyTheLocalExperts) {
  check_ranged_loads(test::source_path("tests/fixtures/moe_26b"));
}

TEST(RangedExpertLoad, Bf16CheckpointReadsOnlyTheLocalExperts) {
  check_ranged_loads(test::source_path("tests/fixtures/bf16_checkpoint"));
}

TEST(RangedExpertLoad, ShardedNestedLayoutReadsOnlyTheLocalExperts) {
  check_ranged_loads(test::source_path("tests/fixtures/released_layout"));
}

TEST(RangedExpertLoad, NativeLayoutReadsOnlyTheLocalExperts) {
  check_ranged_loads(native_copy(test::source_path("tests/fixtures/moe_26b")));
}

TEST(RangedExpertLoad, ReadRowsCopiesOneByteRangeAndRejectsRowsOutsideTheTensor) {
  const std::string dir = test::scratch_dir("ranged_rows");
  Tensor t(DType::bf16, {5, 3});
  for (std::size_t i = 0; i < t.nbytes(); ++i) t.bytes()[i] = static_cast<std::byte>(i * 3 + 1);
  write_safetensors(dir + "/a.safetensors", {{"t", t}});
  auto file = SafetensorsFile::open(dir + "/a.safetensors");
  const Tensor rows = file->read_rows(*file->find("t"), 1, 3);
  EXPECT_TRUE(same_bytes(rows, slice_experts(t, {1, 3})));
  EXPECT_EQ(file->bytes_copied(), 3u * 3u * 2u);
  EXPECT_EQ(file->read_rows(*file->find("t"), 5, 0).numel(), 0);
  EXPECT_THROW(file->read_rows(*file->find("t"), 4, 2), Error);
  EXPECT_THROW(file->read_rows(*file->find("t"), -1, 1), Error);
}

TEST(RangedExpertLoad, RangeOutsideTheModelIsAnError) {
  const std::string dir = test::source_path("tests/fixtures/moe_26b");
  const ModelConfig config = load_config(dir);
  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_THROW(load_gemma4_weights(config, ckpt, nullptr, ExpertRange{6, 4}), Error);
}

}  // namespace
}  // namespace g4
