// host_memory.h: how much memory this machine has, for refusing sizes from outside input that cannot fit
// (a clear g4::Error rather than a bad_alloc or the OOM killer).
#pragma once

#include <cstdint>

namespace g4 {

// This machine's physical memory in bytes (0 when unknown). No Tensor larger than this is allocated: its
// constructor refuses one with a g4::Error naming the shape.
std::uint64_t physical_memory_bytes();

}  // namespace g4
