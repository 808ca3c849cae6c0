// blas_setup.h: makes sure OpenBLAS runs the kernels the processor can run.
//
// OpenBLAS picks its kernels from CPUID when it loads. Under some hypervisors the CPU model is masked and
// OpenBLAS 0.3.21 (Debian 12) falls back to its "Prescott" (SSE3) kernels, 5x slower, although AVX-512 or
// AVX2 are there (seen on the H100 machine's CPUs). When that happens and the user has not chosen a core
// type, the process re-executes itself once with OPENBLAS_CORETYPE set from the CPU's actual features.
#pragma once

namespace g4 {

// Call first thing in main(). Returns only when no re-execution is needed (or it failed, which is harmless).
void ensure_openblas_kernels(char** argv);

}  // namespace g4
