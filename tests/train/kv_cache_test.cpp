// Cached generation against recomputation: on every model fixture, the logits gemma4_extend gives for a
// prompt filled into the KV cache in chunks (1 token, 3 tokens, all at once; the fixtures' window is 4) and
// then extended token by token, several sequences in one batch, equal those of the whole-sequence forward
// at the same positions (fp32, to 1e-5 relative).
#include <gtest/gtest.h>

#include <cmath>

#include "core/allocator.h"
#include "core/error.h"
#include "model/gemma4_model.h"
#include "model/kv_cache.h"
#include "test_paths.h"
#include "train/model_loading.h"

namespace g4 {
namespace {

Batch one_row(const std::vector<std::int64_t>& ids, std::int64_t start) {
  Batch b;
  b.batch_size = 1;
  b.seq_len = static_cast<std::int64_t>(ids.size());
  b.input_ids = b.labels = ids;
  for (std::int64_t t = 0; t < b.seq_len; ++t) b.position_ids.push_back(start + t);
  return b;
}

// max |a - b| / max |b| over one row of logits
double row_error(const float* a, const float* b, std::int64_t n) {
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

class CachedGeneration : public ::testing::TestWithParam<std::string> {};

TEST_P(CachedGeneration, EqualsRecomputation) {
  const Gemma4Model model = load_gemma4_model(test::source_path("tests/fixtures/" + GetParam()));
  const std::int64_t V = model.config.text.vocab_size;
  // Three sequences of different lengths, each longer than the window of 4.
  const std::vector<std::vector<std::int64_t>> seqs = {{2, 17, 33, 4, 61, 9, 12, 45, 80, 3, 27, 14, 70},
                                                       {2, 50, 6, 39, 88, 21, 7, 90, 11},
                                                       {2, 5, 73, 30, 41, 8, 66, 19, 24, 52, 35}};
  const std::int64_t prompt = 6;  // the rest is fed one token per step, all sequences together
  for (const std::int64_t chunk : {1, 3, 6}) {
    SCOPED_TRACE("prefill chunk " + std::to_string(chunk));
    std::vector<std::int64_t> max_lengths;
    for (const auto& s : seqs) max_lengths.push_back(static_cast<std::int64_t>(s.size()));
    KvCache cache(model.config.text, max_lengths, host_allocator(), DType::f32);
    for (std::size_t r = 0; r < seqs.size(); ++r)
      for (std::int64_t first = 0; first < prompt; first += chunk) {
        const std::int64_t n = std::min(chunk, prompt - first);
        cache.select({static_cast<std::int64_t>(r)}, n);
        gemma4_extend(model, one_row({seqs[r].begin() + first, seqs[r].begin() + first + n}, first), cache);
        cache.commit();
      }
    for (std::int64_t pos = prompt;; ++pos) {
      std::vector<std::int64_t> rows;
      Batch step;
      step.seq_len = 1;
      for (std::size_t r = 0; r < seqs.size(); ++r) {
        if (pos >= static_cast<std::int64_t>(seqs[r].size())) continue;
        rows.push_back(static_cast<std::int64_t>(r));
        step.input_ids.push_back(seqs[r][pos]);
        step.position_ids.push_back(pos);
      }
      if (rows.empty()) break;
      step.batch_size = static_cast<std::int64_t>(rows.size());
      step.labels = step.input_ids;
      cache.select(rows, 1);
      const Tensor logits = gemma4_extend(model, step, cache);
      cache.commit();
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& s = seqs[rows[i]];
        const ForwardResult whole = gemma4_forward(model, one_row({s.begin(), s.begin() + pos + 1}, 0));
        const double err = row_error(logits.f32() + i * V, whole.logits.f32() + pos * V, V);
        EXPECT_LE(err, 1e-5) << "sequence " << rows[i] << ", position " << pos;
        EXPECT_TRUE(std::isfinite(err));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CachedGeneration,
                         ::testing::Values("moe_26b", "dense_e2b", "dense_31b", "released_layout",
                                           "bf16_checkpoint", "moe_packed", "moe_padding"));

TEST(KvCache, SizesAndRefusals) {
  const Gemma4Model model = load_gemma4_model(test::source_path("tests/fixtures/dense_e2b"));
  const TextConfig& c = model.config.text;
  // dense_e2b: 6 layers, the last 2 KV-shared; sliding layers keep 4 positions, full ones all.
  std::uint64_t expected = 0;
  for (const LayerSpec& s : c.layers) {
    if (s.kv_source >= 0) continue;
    const std::uint64_t kept = s.window > 0 ? 4 : 10;
    expected += kept * static_cast<std::uint64_t>(s.num_kv_heads * s.head_dim) * 2 * 4;
  }
  EXPECT_EQ(KvCache::bytes_needed(c, {10}, DType::f32), expected);
  EXPECT_EQ(KvCache::bytes_needed(c, {10, 10}, DType::f32), 2 * expected);
  EXPECT_THROW(KvCache::bytes_needed(c, {std::int64_t{1} << 62}, DType::f32), Error);      // overflow
  EXPECT_THROW(KvCache(c, {std::int64_t{1} << 40}, host_allocator(), DType::f32), Error);  // no memory
  KvCache cache(c, {3}, host_allocator(), DType::f32);
  EXPECT_THROW(cache.select({0}, 4), Error);  // past the sized length
  EXPECT_THROW(cache.select({1}, 1), Error);  // no such sequence
}

}  // namespace
}  // namespace g4
