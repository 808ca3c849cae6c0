// mbarrier.h: the shared-memory barriers (mbarrier) of the warp-specialised grouped GEMM
// (grouped_gemm_ws.cu): its ring's "full" and "empty" barriers. Addresses are 32-bit shared-memory addresses
// of 8-byte-aligned barriers. Needs sm_90. (Arrivals that add expected transaction bytes, for TMA, are in
// tma_copy.h.)
//
// Phases: a barrier initialised with count n completes its current phase after n arrivals, then starts the
// next; wait(parity) returns once the phase with that parity has completed. A fresh barrier is in phase 0, so
// wait(1) returns at once (the "preceding" phase counts as complete): producers start waiting on their
// "empty" barriers with parity 1, consumers on "full" barriers with parity 0.
#pragma once

#include <cstdint>

namespace g4::cuda::mbar {

__device__ __forceinline__ void init(std::uint32_t bar, std::uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Blocks until the phase of the given parity has completed (acquire: memory written before the arrivals that
// completed it is visible afterwards).
__device__ __forceinline__ void wait(std::uint32_t bar, std::uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_again:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_again;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// One arrival of the executing thread (release).
__device__ __forceinline__ void arrive(std::uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// One arrival, made when every cp.async this thread issued before it has landed; .noinc: the arrival counts
// against the count given at init (the barrier must have been initialised expecting it).
__device__ __forceinline__ void arrive_on_cp_async(std::uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

}  // namespace g4::cuda::mbar
