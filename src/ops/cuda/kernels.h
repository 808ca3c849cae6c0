// kernels.h: the CUDA backend's kernels behind the op interface (ops/kernels.h's table, same signatures and
// accumulation rules as ops/cpu's), and their installation.
//
// install_cuda_kernels() fills cuda_kernels() with the ops that have a CUDA version so far and makes the
// GPU's caching allocator (core/cuda) the default activation allocator for CUDA tensors. Every entry of the
// table has a CUDA version; attention's is the plain reference one (scores recomputed per use, O(S) memory,
// slow), which the flash kernels are to replace. Idempotent; call
// it once before running ops on CUDA tensors (the CLI and the CUDA tests do).
//
// Invariants: every kernel is queued on the legacy default stream, so it is ordered with the blocking
// cudaMemcpy of Tensor::to and with the caching allocator's zero-fill; host arrays (token ids, labels, RoPE
// tables) are uploaded first. Arithmetic matches the CPU kernels': fp32 storage, and double wherever the CPU
// kernel reduces or evaluates in double (RMSNorm statistics and its weight gradient, soft-cap, the loss's row
// statistics, AdamW, sums of squares), in a fixed order: results are run-to-run identical, with no atomics
// (the embedding gradient sums each row's tokens in token order, as the CPU does). GEMMs are cuBLAS SGEMM in
// full fp32 (no TF32).
#pragma once

#include "core/allocator.h"

namespace g4::cuda {

void install_cuda_kernels();

// For a command asked to run on the GPU: installs the kernels and returns the GPU's allocator, or a g4::Error
// naming `what` when no CUDA device is usable.
Allocator& cuda_device_allocator(const char* what);

}  // namespace g4::cuda
