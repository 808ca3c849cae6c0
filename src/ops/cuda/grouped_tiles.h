// grouped_tiles.h: how the grouped GEMM kernels map an m-tile to its group (expert) on the device; for .cu
// files only.
//
// Invariant: tile_offsets [groups + 1] are the prefix sums of each group's m-tile count (moe_permute's
// tile_offsets), so m-tile t (< tile_offsets[groups]) belongs to the last group g with tile_offsets[g] <= t;
// empty groups (equal consecutive offsets) are skipped by that rule.
#pragma once

namespace g4::cuda {

__device__ __forceinline__ int group_of_tile(const int* tile_offsets, int groups, int tile) {
  int lo = 0, hi = groups - 1;
  while (lo < hi) {  // binary search over the prefix sums
    const int mid = (lo + hi + 1) / 2;
    if (tile_offsets[mid] <= tile)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace g4::cuda
