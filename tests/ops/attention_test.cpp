// The CPU attention kernels against a plain float64 attention that applies AttentionVisibility's rule key by
// key: causal, sliding windows, packed segments, key padding (with rows that see nothing), and queries that
// are the last tokens of a longer key sequence (query_offset, as a KV cache will use), bidirectional rows
// (the vision encoder) and image blocks seeing their later tokens. Sizes cross the
// kernels' 64-query blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "ops/cpu/attention.h"

namespace g4 {
namespace {

constexpr int kNq = 4, kNkv = 2, kD = 8;

bool sees(const AttentionVisibility& v, std::int64_t i, std::int64_t j) {
  const std::int64_t p = v.query_offset + i;
  const bool in_block = v.block_end && v.block_end[p] >= j;
  if (v.causal && j > p && !in_block) return false;
  if (v.window > 0 && j <= p - v.window) return false;
  if (v.segment && v.segment[j] != v.segment[p]) return false;
  return !v.key_mask || v.key_mask[j];
}

struct Grads {
  std::vector<double> out, dq, dk, dv;
};

// Forward and backward in float64, one (head, query) at a time.
Grads reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                const std::vector<float>& dout, const AttentionVisibility& vis) {
  const std::int64_t Sq = vis.queries, Sk = vis.keys;
  Grads g{std::vector<double>(q.size()), std::vector<double>(q.size()), std::vector<double>(k.size()),
          std::vector<double>(v.size())};
  for (int h = 0; h < kNq; ++h) {
    const int kv = h / (kNq / kNkv);
    for (std::int64_t i = 0; i < Sq; ++i) {
      const float* qi = &q[(i * kNq + h) * kD];
      std::vector<double> p(Sk, 0.0);
      double mx = -INFINITY, sum = 0;
      for (std::int64_t j = 0; j < Sk; ++j) {
        if (!sees(vis, i, j)) continue;
        double s = 0;
        for (int d = 0; d < kD; ++d) s += double(qi[d]) * k[(j * kNkv + kv) * kD + d];
        p[j] = s;
        mx = std::max(mx, s);
      }
      if (mx == -INFINITY) continue;  // sees nothing: zero output and gradients
      for (std::int64_t j = 0; j < Sk; ++j) sum += sees(vis, i, j) ? std::exp(p[j] - mx) : 0.0;
      for (std::int64_t j = 0; j < Sk; ++j) p[j] = sees(vis, i, j) ? std::exp(p[j] - mx) / sum : 0.0;
      const float* doi = &dout[(i * kNq + h) * kD];
      std::vector<double> dp(Sk, 0.0);
      double dot = 0;
      for (std::int64_t j = 0; j < Sk; ++j) {
        for (int d = 0; d < kD; ++d) {
          g.out[(i * kNq + h) * kD + d] += p[j] * v[(j * kNkv + kv) * kD + d];
          dp[j] += double(doi[d]) * v[(j * kNkv + kv) * kD + d];
        }
        dot += p[j] * dp[j];
      }
      for (std::int64_t j = 0; j < Sk; ++j) {
        const double ds = p[j] * (dp[j] - dot);
        for (int d = 0; d < kD; ++d) {
          g.dq[(i * kNq + h) * kD + d] += ds * k[(j * kNkv + kv) * kD + d];
          g.dk[(j * kNkv + kv) * kD + d] += ds * qi[d];
          g.dv[(j * kNkv + kv) * kD + d] += p[j] * doi[d];
        }
      }
    }
  }
  return g;
}

double worst(const std::vector<float>& a, const std::vector<double>& e) {
  double scale = 0, diff = 0;
  for (std::size_t i = 0; i < e.size(); ++i) {
    if (std::isnan(a[i])) return NAN;
    scale = std::max(scale, std::fabs(e[i]));
    diff = std::max(diff, std::fabs(a[i] - e[i]));
  }
  return diff / scale;
}

void check_case(AttentionVisibility vis, const char* what) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random = [&](std::int64_t n) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (float& e : x) e = normal(rng);
    return x;
  };
  const auto q = random(vis.queries * kNq * kD), k = random(vis.keys * kNkv * kD),
             v = random(vis.keys * kNkv * kD), dout = random(vis.queries * kNq * kD);
  std::vector<float> out(q.size()), dq(q.size()), dk(k.size(), 0.0f), dv(v.size(), 0.0f);
  attention_forward(q.data(), k.data(), v.data(), vis, out.data(), kNq, kNkv, kD);
  attention_backward(q.data(), k.data(), v.data(), vis, dout.data(), dq.data(), dk.data(), dv.data(), kNq,
                     kNkv, kD);
  const Grads e = reference(q, k, v, dout, vis);
  EXPECT_LE(worst(out, e.out), 1e-5) << what << ": out";
  EXPECT_LE(worst(dq, e.dq), 1e-5) << what << ": dq";
  EXPECT_LE(worst(dk, e.dk), 1e-5) << what << ": dk";
  EXPECT_LE(worst(dv, e.dv), 1e-5) << what << ": dv";
}

TEST(Attention, MatchesFloat64ForEveryKindOfVisibility) {
  const std::int64_t S = 150;
  std::vector<std::int64_t> segment(S);
  for (std::int64_t j = 0; j < S; ++j) segment[j] = j < 40 ? 0 : j < 41 ? 1 : j < 110 ? 2 : 3;
  std::vector<std::uint8_t> padding(S, 1);
  for (std::int64_t j = 0; j < 12; ++j) padding[j] = 0;  // left padding: rows 0-11 see nothing
  for (std::int64_t j = 70; j < 75; ++j) padding[j] = 0;
  check_case({S, S, 0, 0, nullptr, nullptr}, "causal");
  check_case({S, S, 0, 17, nullptr, nullptr}, "sliding window 17");
  check_case({S, S, 0, 0, segment.data(), nullptr}, "packed segments");
  check_case({S, S, 0, 64, nullptr, padding.data()}, "padding and a window");
  check_case({70, S, S - 70, 0, segment.data(), nullptr}, "last 70 queries of 150 keys, segments");
  check_case({70, S, S - 70, 33, nullptr, padding.data()}, "last 70 queries, window 33, padding");
  check_case({1, S, S - 1, 0, nullptr, nullptr}, "one query after 149 cached keys");
  check_case({S, S, 0, 0, nullptr, nullptr, false}, "bidirectional");
  check_case({S, S, 0, 0, segment.data(), padding.data(), false}, "bidirectional within segments, padding");
  // Two image blocks ([20, 49] and [80, 85]): their tokens also see the block's later tokens; the window
  // still limits earlier keys.
  std::vector<std::int64_t> block_end(S, -1);
  for (std::int64_t j = 20; j < 50; ++j) block_end[j] = 49;
  for (std::int64_t j = 80; j < 86; ++j) block_end[j] = 85;
  check_case({S, S, 0, 8, nullptr, nullptr, true, block_end.data()}, "image blocks, window 8");
  check_case({70, S, S - 70, 0, nullptr, padding.data(), true, block_end.data()},
             "image blocks, last 70 queries");
}

}  // namespace
}  // namespace g4
