// cluster.h: thread-block clusters for the multicast grouped GEMM (grouped_gemm_ws.cu, policy 10): the CTA's
// rank in its cluster, cluster-wide barriers, and arrivals on an mbarrier in a peer CTA's shared memory.
// Needs sm_90.
#pragma once

#include <cstdint>

namespace g4::cuda::cluster {

__device__ __forceinline__ std::uint32_t rank() {
  std::uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}

// Makes this thread's mbarrier initialisations visible to the cluster (before the cluster barrier that
// publishes them).
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// Every thread of every CTA in the cluster arrives and waits (release / acquire). All threads of each warp
// must execute it together.
__device__ __forceinline__ void sync() {
  asm volatile(
      "barrier.cluster.arrive.release.aligned;\n"
      "barrier.cluster.wait.acquire.aligned;\n" ::
          : "memory");
}

// One arrival (release, cluster scope) on the mbarrier at shared address `bar` of this CTA, but in the shared
// memory of cluster CTA `peer`.
__device__ __forceinline__ void arrive_remote(std::uint32_t bar, std::uint32_t peer) {
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(bar),
      "r"(peer)
      : "memory");
}

}  // namespace g4::cuda::cluster
