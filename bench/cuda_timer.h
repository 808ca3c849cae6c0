// cuda_timer.h: the benchmarks' timing rule, shared by g4_bench_moe and g4_bench_ep: the median of `iters`
// CUDA-event-timed runs on `stream` after 3 warm-ups, in ms. Each run is timed from an idle stream (the
// previous run's end event was waited for), so work a run leaves queued is counted in that run.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "core/cuda/cuda_check.h"

namespace g4::cuda::bench {

struct Timer {
  cudaStream_t stream;
  int iters;
  double median_ms(const std::function<void()>& fn) const {
    for (int i = 0; i < 3; ++i) fn();
    G4_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<double> t;
    cudaEvent_t a, b;
    G4_CUDA_CHECK(cudaEventCreate(&a));
    G4_CUDA_CHECK(cudaEventCreate(&b));
    for (int i = 0; i < iters; ++i) {
      G4_CUDA_CHECK(cudaEventRecord(a, stream));
      fn();
      G4_CUDA_CHECK(cudaEventRecord(b, stream));
      G4_CUDA_CHECK(cudaEventSynchronize(b));
      float ms = 0;
      G4_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
      t.push_back(ms);
    }
    G4_CUDA_CHECK(cudaEventDestroy(a));
    G4_CUDA_CHECK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

}  // namespace g4::cuda::bench
