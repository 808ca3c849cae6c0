// nccl_wait.h: waiting on a non-blocking NCCL communicator with a deadline, and NCCL errors as text (internal
// to the NCCL communicator; includes nccl.h).
//
// Invariant: nccl_wait returns only when the communicator is ready (no operation of it in progress, no
// asynchronous error) and, when `stream` is given, every operation enqueued on that stream has completed; or
// when it has failed or timed out, then with the reason. It never calls ncclCommAbort itself: the caller
// aborts, so that it can mark its communicator unusable in the same place.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

namespace g4 {

// "ncclRemoteError (<NCCL's description>): <ncclGetLastError>", one line.
std::string nccl_describe(ncclComm_t comm, ncclResult_t rc);

// Polls ncclCommGetAsyncError (and cudaStreamQuery(stream) unless stream is null) until done, an error, or
// timeout_s seconds. Returns "" when done, else why not (one line, starting with "failed: " or "did not
// complete within ...").
std::string nccl_wait(ncclComm_t comm, cudaStream_t stream, double timeout_s);

}  // namespace g4
