// tma_copy.h: the bulk tensor copy (TMA, cp.async.bulk.tensor) of one box from global into shared memory,
// completing on an mbarrier (see mbarrier.h) with complete_tx: the barrier's phase completes only once its
// expected transaction bytes (arrive_expect_tx) have landed, besides its arrival count. Needs sm_90.
#pragma once

#include <cstdint>

#include <cuda.h>

namespace g4::cuda::tma {

// One arrival that also adds `bytes` to the transaction count the current phase waits for.
__device__ __forceinline__ void arrive_expect_tx(std::uint32_t bar, std::uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

// Copies the box at element coordinates (c0, c1, c2) of the 3-D tensor `map` (a __grid_constant__ kernel
// parameter) to shared address dst (1024-byte aligned for 128-byte swizzling); out-of-range elements are
// zeros and still count towards the box's bytes.
__device__ __forceinline__ void load_3d(std::uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2,
                                        std::uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
      "%4}], [%5];\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

// The same for a 2-D tensor: the box at element coordinates (c0, c1).
__device__ __forceinline__ void load_2d(std::uint32_t dst, const CUtensorMap* map, int c0, int c1,
                                        std::uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, "
      "%3}], "
      "[%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}

// load_3d into the same shared address of every CTA of the cluster named in cta_mask (bit i: rank i), each
// copy completing on the barrier at address bar of its own CTA.
__device__ __forceinline__ void load_3d_multicast(std::uint32_t dst, const CUtensorMap* map, int c0, int c1,
                                                  int c2, std::uint32_t bar, std::uint16_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster "
      "[%0], "
      "[%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "h"(cta_mask)
      : "memory");
}

}  // namespace g4::cuda::tma
