// nccl_wait.cpp: the polling loop behind every NCCL call of the NCCL communicator.
#include "dist/nccl_wait.h"

#include <chrono>
#include <sstream>
#include <thread>

namespace g4 {

std::string nccl_describe(ncclComm_t comm, ncclResult_t rc) {
  std::string out = ncclGetErrorString(rc);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') {
    std::string detail = last;
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
    out += ": " + detail;
  }
  return out;
}

std::string nccl_wait(ncclComm_t comm, cudaStream_t stream, double timeout_s) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  for (;;) {
    ncclResult_t async = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm, &async);
    if (rc != ncclSuccess) return "failed: ncclCommGetAsyncError: " + nccl_describe(comm, rc);
    if (async != ncclSuccess && async != ncclInProgress) return "failed: " + nccl_describe(comm, async);
    if (async == ncclSuccess) {
      if (stream == nullptr) return "";
      const cudaError_t q = cudaStreamQuery(stream);
      if (q == cudaSuccess) return "";
      if (q != cudaErrorNotReady) {
        cudaGetLastError();  // the caller aborts; leave no sticky launch error behind for unrelated work
        return std::string("failed: CUDA error ") + cudaGetErrorName(q) + " (" + cudaGetErrorString(q) + ")";
      }
    }
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited > timeout_s) {
      std::ostringstream why;
      why << "did not complete within " << timeout_s
          << " s (G4_COMM_TIMEOUT_S); another rank probably died or stopped";
      return why.str();
    }
    // Small collectives finish in microseconds: spin briefly, then poll every 50 us.
    if (waited < 1e-3)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace g4
