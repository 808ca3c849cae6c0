// host_device.h: G4_HOST_DEVICE marks an inline function that both the CPU kernels and the CUDA kernels call
// (one definition of an element's arithmetic for both backends); it is empty outside nvcc.
#pragma once

#if defined(__CUDACC__)
#define G4_HOST_DEVICE __host__ __device__
#else
#define G4_HOST_DEVICE
#endif
