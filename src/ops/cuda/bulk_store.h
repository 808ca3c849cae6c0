// bulk_store.h: the staged epilogue's instructions (grouped_gemm_ws.cu, policy 9): stmatrix, which writes a
// warp's mma/wgmma accumulator fragments (as packed bf16 pairs) into shared memory as 8 x 8 blocks; the bulk
// copy (cp.async.bulk, no tensor map) of a contiguous run of bytes from shared to global memory, issued by
// one thread and tracked in that thread's bulk async-groups; and named barriers for one warpgroup. Needs
// sm_90.
#pragma once

#include <cstdint>

namespace g4::cuda::bulk {

// Four 8 x 8 bf16 blocks: lanes 8i .. 8i + 7 give the shared addresses (16-byte aligned) of block i's rows
// 0 .. 7; register ri is the executing lane's pair of block i (row lane / 4, columns 2 (lane % 4), + 1), the
// layout of an mma accumulator fragment.
__device__ __forceinline__ void stmatrix_x4(std::uint32_t addr, std::uint32_t r0, std::uint32_t r1,
                                            std::uint32_t r2, std::uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0),
               "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

// Copies `bytes` (a multiple of 16; both addresses 16-byte aligned) from shared src to global dst,
// asynchronously; the copy joins the executing thread's current bulk async-group (see commit).
__device__ __forceinline__ void store(void* dst, std::uint32_t src, std::uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst), "r"(src),
               "r"(bytes)
               : "memory");
}

// Closes the executing thread's current bulk async-group.
__device__ __forceinline__ void commit() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}

// Blocks until every bulk async-group of the executing thread has finished reading its shared source (the
// source may then be overwritten; the global writes may still be in flight).
__device__ __forceinline__ void wait_all_read() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}

// Blocks until every bulk async-group of the executing thread has completed, writes included.
__device__ __forceinline__ void wait_all() {
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}

// Barrier `id` (1 .. 15; 0 is __syncthreads') over `threads` threads (a multiple of 32), e.g. one warpgroup.
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace g4::cuda::bulk
