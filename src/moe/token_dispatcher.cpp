#include "moe/token_dispatcher.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "moe/state_dict_adapter.h"

namespace g4 {

DispatcherKind dispatcher_from_name(std::string_view name) {
  if (name == "allgather") return DispatcherKind::allgather;
  if (name == "alltoall") return DispatcherKind::alltoall;
  fail("unknown token dispatcher \"", std::string(name), "\" (expected allgather or alltoall)");
}

const char* dispatcher_name(DispatcherKind kind) {
  return kind == DispatcherKind::allgather ? "allgather" : "alltoall";
}

MoeParallel make_moe_parallel(Communicator& ep, DispatcherKind dispatcher, bool replicated_tokens,
                              std::int64_t num_experts) {
  // A dense model (no experts) has nothing to spread; its MoeParallel is never dispatched through.
  const ExpertRange mine = num_experts > 0 ? expert_range(num_experts, ep.size(), ep.rank()) : ExpertRange{};
  return MoeParallel{&ep, dispatcher, replicated_tokens, num_experts, mine};
}

ExpertsConfig local_experts_config(const ExpertsConfig& cfg, const MoeParallel& parallel) {
  check(cfg.num_experts == parallel.num_experts, "a MoE block of ", cfg.num_experts,
        " experts dispatched over an expert-parallel group set up for ", parallel.num_experts);
  const ExpertRange r = parallel.experts;
  ExpertsConfig local = cfg;
  local.start = r.start;
  local.n_local = r.count;
  return local;
}

namespace {

template <class T>
void sum_over(Communicator& comm, T* data, std::size_t n) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
  comm.all_reduce_sum(data, n);
}

// Bytes of `counts[r]` rows of `width` elements of E each, per rank.
template <class E>
std::vector<std::size_t> row_bytes(const std::vector<std::int64_t>& counts, std::int64_t width) {
  std::vector<std::size_t> b(counts.size());
  for (std::size_t r = 0; r < counts.size(); ++r)
    b[r] = static_cast<std::size_t>(counts[r] * width) * sizeof(E);
  return b;
}

template <class E>
void resize(std::vector<E>& v, std::int64_t n) {
  v.resize(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)));  // ≥ 1: data() is never null
}

// ---- allgather (§7.3) ----

template <class T>
void allgather_forward(Communicator& ep, const ExpertsConfig& cfg, const T* x, const std::uint8_t* mask,
                       const T* w, const std::int64_t* idx, std::int64_t tokens, std::int64_t K, const T* gu,
                       const T* down, T* y, DispatchContext<T>* c) {
  const std::int64_t H = cfg.hidden;
  c->lens = ep.all_gather_i64(tokens);
  c->offset = 0;
  for (int r = 0; r < ep.rank(); ++r) c->offset += c->lens[r];
  c->rows = 0;
  for (std::int64_t n : c->lens) c->rows += n;
  test_kill_point();
  resize(c->x, c->rows * H);
  resize(c->weights, c->rows * K);
  resize(c->indices, c->rows * K);
  resize(c->mask, c->rows);
  std::vector<std::uint8_t> own_mask(static_cast<std::size_t>(std::max<std::int64_t>(tokens, 1)), 1);
  if (mask) std::copy(mask, mask + tokens, own_mask.begin());
  ep.all_gather_v(x, tokens * H * sizeof(T), c->x.data(), row_bytes<T>(c->lens, H));
  ep.all_gather_v(w, tokens * K * sizeof(T), c->weights.data(), row_bytes<T>(c->lens, K));
  ep.all_gather_v(idx, tokens * K * sizeof(std::int64_t), c->indices.data(),
                  row_bytes<std::int64_t>(c->lens, K));
  ep.all_gather_v(own_mask.data(), tokens, c->mask.data(), row_bytes<std::uint8_t>(c->lens, 1));
  resize(c->y, c->rows * H);
  moe_experts_forward<T>(cfg, c->x.data(), c->mask.data(), c->weights.data(), c->indices.data(), c->rows, K,
                         gu, down, c->y.data(), &c->experts);
  sum_over(ep, c->y.data(), static_cast<std::size_t>(c->rows * H));
  std::copy(c->y.begin() + c->offset * H, c->y.begin() + (c->offset + tokens) * H, y);
}

template <class T>
void allgather_backward(Communicator& ep, const ExpertsConfig& cfg, const T* gu, const T* down,
                        DispatchContext<T>& c, const T* dy, T* dx, T* dw, T* dgu, T* ddown) {
  const std::int64_t H = cfg.hidden, K = c.experts.perm.top_k, N = c.rows, T0 = c.tokens;
  // Backward of "all-reduce, then keep my rows": my rows' gradient, summed over ranks.
  c.dy.assign(static_cast<std::size_t>(std::max<std::int64_t>(N * H, 1)), T(0));
  std::copy(dy, dy + T0 * H, c.dy.begin() + c.offset * H);
  sum_over(ep, c.dy.data(), static_cast<std::size_t>(N * H));
  resize(c.dx, N * H);
  resize(c.dw, N * K);
  moe_experts_backward<T>(cfg, c.x.data(), gu, down, c.experts, c.dy.data(), c.dx.data(), c.dw.data(), dgu,
                          ddown);
  // Backward of the gathers: all-reduce, then my slice.
  sum_over(ep, c.dx.data(), static_cast<std::size_t>(N * H));
  sum_over(ep, c.dw.data(), static_cast<std::size_t>(N * K));
  std::copy(c.dx.begin() + c.offset * H, c.dx.begin() + (c.offset + T0) * H, dx);
  std::copy(c.dw.begin() + c.offset * K, c.dw.begin() + (c.offset + T0) * K, dw);
}

// ---- alltoall (§7.2) ----

template <class T>
void alltoall_forward(Communicator& ep, const ExpertsConfig& cfg, const T* x, const std::uint8_t* mask,
                      const T* w, const std::int64_t* idx, std::int64_t tokens, std::int64_t K, const T* gu,
                      const T* down, T* y, DispatchContext<T>* c) {
  const std::int64_t H = cfg.hidden, E = cfg.num_experts;
  const int P = ep.size();
  std::vector<int> owner(static_cast<std::size_t>(E));
  for (int r = 0; r < P; ++r) {
    const ExpertRange er = expert_range(E, P, r);
    for (std::int64_t e = er.start; e < er.start + er.count; ++e) owner[e] = r;
  }
  // Layout: each valid token once per destination rank, rank-major then token order.
  std::vector<std::vector<std::int64_t>> to(static_cast<std::size_t>(P));
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(P));
  for (std::int64_t t = 0; t < tokens; ++t) {
    if (mask && !mask[t]) continue;
    std::fill(seen.begin(), seen.end(), 0);
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t e = idx[t * K + k];
      check(e >= 0 && e < E, "expert index ", e, " out of range [0, ", E, ")");
      if (!seen[owner[e]]) {
        seen[owner[e]] = 1;
        to[owner[e]].push_back(t);
      }
    }
  }
  c->send_counts.assign(static_cast<std::size_t>(P), 0);
  c->send_tokens.clear();
  for (int r = 0; r < P; ++r) {
    c->send_counts[r] = static_cast<std::int64_t>(to[r].size());
    c->send_tokens.insert(c->send_tokens.end(), to[r].begin(), to[r].end());
  }
  c->recv_counts.assign(static_cast<std::size_t>(P), 0);
  ep.all_to_all_v(c->send_counts.data(), std::vector<std::size_t>(P, sizeof(std::int64_t)),
                  c->recv_counts.data(), std::vector<std::size_t>(P, sizeof(std::int64_t)));
  test_kill_point();
  const std::int64_t S = static_cast<std::int64_t>(c->send_tokens.size());
  c->rows = 0;
  for (std::int64_t n : c->recv_counts) c->rows += n;
  const std::int64_t N = c->rows;
  // Pack and send the rows, their indices and their weights.
  std::vector<T> sx(static_cast<std::size_t>(std::max<std::int64_t>(S * H, 1))),
      sw(static_cast<std::size_t>(std::max<std::int64_t>(S * K, 1)));
  std::vector<std::int64_t> si(static_cast<std::size_t>(std::max<std::int64_t>(S * K, 1)));
  for (std::int64_t s = 0; s < S; ++s) {
    const std::int64_t t = c->send_tokens[s];
    std::copy(x + t * H, x + (t + 1) * H, sx.begin() + s * H);
    std::copy(w + t * K, w + (t + 1) * K, sw.begin() + s * K);
    std::copy(idx + t * K, idx + (t + 1) * K, si.begin() + s * K);
  }
  resize(c->x, N * H);
  resize(c->weights, N * K);
  resize(c->indices, N * K);
  ep.all_to_all_v(sx.data(), row_bytes<T>(c->send_counts, H), c->x.data(), row_bytes<T>(c->recv_counts, H));
  ep.all_to_all_v(sw.data(), row_bytes<T>(c->send_counts, K), c->weights.data(),
                  row_bytes<T>(c->recv_counts, K));
  ep.all_to_all_v(si.data(), row_bytes<std::int64_t>(c->send_counts, K), c->indices.data(),
                  row_bytes<std::int64_t>(c->recv_counts, K));
  // Local experts; slots of other ranks' experts are skipped, so each row is the sum of its local experts.
  resize(c->y, N * H);
  moe_experts_forward<T>(cfg, c->x.data(), nullptr, c->weights.data(), c->indices.data(), N, K, gu, down,
                         c->y.data(), &c->experts);
  // Combine: rows go back to their sources, which sum them (destination ranks in ascending order).
  resize(c->back, S * H);
  ep.all_to_all_v(c->y.data(), row_bytes<T>(c->recv_counts, H), c->back.data(),
                  row_bytes<T>(c->send_counts, H));
  std::fill(y, y + tokens * H, T(0));
  for (std::int64_t s = 0; s < S; ++s) {
    T* row = y + c->send_tokens[s] * H;
    const T* src = c->back.data() + s * H;
    for (std::int64_t h = 0; h < H; ++h) row[h] += src[h];
  }
}

template <class T>
void alltoall_backward(Communicator& ep, const ExpertsConfig& cfg, const T* gu, const T* down,
                       DispatchContext<T>& c, const T* dy, T* dx, T* dw, T* dgu, T* ddown) {
  const std::int64_t H = cfg.hidden, K = c.experts.perm.top_k, N = c.rows, T0 = c.tokens;
  const std::int64_t S = static_cast<std::int64_t>(c.send_tokens.size());
  // Backward of the combine = dispatch of dy: every destination receives the token's dy.
  resize(c.back, S * H);
  for (std::int64_t s = 0; s < S; ++s)
    std::copy(dy + c.send_tokens[s] * H, dy + (c.send_tokens[s] + 1) * H, c.back.begin() + s * H);
  resize(c.dy, N * H);
  ep.all_to_all_v(c.back.data(), row_bytes<T>(c.send_counts, H), c.dy.data(), row_bytes<T>(c.recv_counts, H));
  resize(c.dx, N * H);
  resize(c.dw, N * K);
  moe_experts_backward<T>(cfg, c.x.data(), gu, down, c.experts, c.dy.data(), c.dx.data(), c.dw.data(), dgu,
                          ddown);
  // Backward of the dispatch = combine of the row gradients and of the routing-weight gradients.
  std::vector<T> back_dw(static_cast<std::size_t>(std::max<std::int64_t>(S * K, 1)));
  ep.all_to_all_v(c.dx.data(), row_bytes<T>(c.recv_counts, H), c.back.data(), row_bytes<T>(c.send_counts, H));
  ep.all_to_all_v(c.dw.data(), row_bytes<T>(c.recv_counts, K), back_dw.data(),
                  row_bytes<T>(c.send_counts, K));
  std::fill(dx, dx + T0 * H, T(0));
  std::fill(dw, dw + T0 * K, T(0));
  for (std::int64_t s = 0; s < S; ++s) {
    const std::int64_t t = c.send_tokens[s];
    for (std::int64_t h = 0; h < H; ++h) dx[t * H + h] += c.back[s * H + h];
    for (std::int64_t k = 0; k < K; ++k) dw[t * K + k] += back_dw[s * K + k];
  }
}

}  // namespace

Tensor all_gather_experts(Communicator& ep, const Tensor& local, std::int64_t num_experts) {
  check(local.dtype() == DType::f32 && local.rank() >= 1, "all_gather_experts: expected an F32 tensor");
  const ExpertRange mine = expert_range(num_experts, ep.size(), ep.rank());
  check(local.dim(0) == mine.count, "all_gather_experts: rank ", ep.rank(), " holds ", local.dim(0),
        " experts, expected ", mine.count);
  Shape shape = local.shape();
  shape[0] = num_experts;
  Tensor full(DType::f32, shape);
  const std::size_t row = full.nbytes() / static_cast<std::size_t>(num_experts);
  std::vector<std::size_t> bytes(static_cast<std::size_t>(ep.size()));
  for (int r = 0; r < ep.size(); ++r)
    bytes[r] = static_cast<std::size_t>(expert_range(num_experts, ep.size(), r).count) * row;
  ep.all_gather_v(local.bytes(), local.nbytes(), full.bytes(), bytes);
  return full;
}

namespace {

// replicated_tokens: rank r's block of the T tokens (contiguous, ranks < T mod P take one more).
void token_blocks(std::int64_t tokens, int P, std::vector<std::int64_t>* lens, std::int64_t* first, int me) {
  lens->assign(static_cast<std::size_t>(P), tokens / P);
  for (int r = 0; r < tokens % P; ++r) ++(*lens)[r];
  *first = 0;
  for (int r = 0; r < me; ++r) *first += (*lens)[r];
}

}  // namespace

template <class T>
void dispatched_experts_forward(const MoeParallel& parallel, const ExpertsConfig& cfg, const T* x,
                                const std::uint8_t* token_mask, const T* weights, const std::int64_t* indices,
                                std::int64_t tokens, std::int64_t top_k, const T* gate_and_up, const T* down,
                                T* y, DispatchContext<T>* ctx) {
  check(parallel.ep != nullptr, "expert parallelism without an EP communicator");
  Communicator& ep = *parallel.ep;
  const ExpertsConfig local = local_experts_config(cfg, parallel);
  const std::int64_t H = cfg.hidden, K = top_k;
  std::int64_t first = 0, n = tokens;
  if (parallel.replicated_tokens) {
    token_blocks(tokens, ep.size(), &ctx->block_lens, &ctx->block_first, ep.rank());
    first = ctx->block_first;
    n = ctx->block_lens[ep.rank()];
  }
  ctx->tokens = n;
  const std::uint8_t* mask = token_mask ? token_mask + first : nullptr;
  if (parallel.dispatcher == DispatcherKind::allgather)
    allgather_forward<T>(ep, local, x + first * H, mask, weights + first * K, indices + first * K, n, K,
                         gate_and_up, down, y + first * H, ctx);
  else
    alltoall_forward<T>(ep, local, x + first * H, mask, weights + first * K, indices + first * K, n, K,
                        gate_and_up, down, y + first * H, ctx);
  if (parallel.replicated_tokens) {
    std::vector<T> block(y + first * H, y + (first + n) * H);
    ep.all_gather_v(block.data(), block.size() * sizeof(T), y, row_bytes<T>(ctx->block_lens, H));
  }
}

template <class T>
void dispatched_experts_backward(const MoeParallel& parallel, const ExpertsConfig& cfg, const T* gate_and_up,
                                 const T* down, DispatchContext<T>& ctx, const T* dy, T* dx, T* dweights,
                                 T* dgate_and_up, T* ddown) {
  Communicator& ep = *parallel.ep;
  const ExpertsConfig local = local_experts_config(cfg, parallel);
  const std::int64_t H = cfg.hidden, K = ctx.experts.perm.top_k;
  const std::int64_t first = parallel.replicated_tokens ? ctx.block_first : 0, n = ctx.tokens;
  if (parallel.dispatcher == DispatcherKind::allgather)
    allgather_backward<T>(ep, local, gate_and_up, down, ctx, dy + first * H, dx + first * H,
                          dweights + first * K, dgate_and_up, ddown);
  else
    alltoall_backward<T>(ep, local, gate_and_up, down, ctx, dy + first * H, dx + first * H,
                         dweights + first * K, dgate_and_up, ddown);
  if (parallel.replicated_tokens) {
    std::vector<T> bx(dx + first * H, dx + (first + n) * H),
        bw(dweights + first * K, dweights + (first + n) * K);
    ep.all_gather_v(bx.data(), bx.size() * sizeof(T), dx, row_bytes<T>(ctx.block_lens, H));
    ep.all_gather_v(bw.data(), bw.size() * sizeof(T), dweights, row_bytes<T>(ctx.block_lens, K));
  }
}

#define G4_INSTANTIATE(T)                                                                                    \
  template void dispatched_experts_forward<T>(                                                               \
      const MoeParallel&, const ExpertsConfig&, const T*, const std::uint8_t*, const T*,                     \
      const std::int64_t*, std::int64_t, std::int64_t, const T*, const T*, T*, DispatchContext<T>*);         \
  template void dispatched_experts_backward<T>(const MoeParallel&, const ExpertsConfig&, const T*, const T*, \
                                               DispatchContext<T>&, const T*, T*, T*, T*, T*);
G4_INSTANTIATE(float)
G4_INSTANTIATE(double)
#undef G4_INSTANTIATE

}  // namespace g4
