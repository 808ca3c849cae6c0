#include "core/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/checked_math.h"
#include "core/error.h"
#include "core/host_memory.h"

namespace g4 {

namespace {

class HeapAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu; }

  std::shared_ptr<std::byte[]> allocate(std::uint64_t bytes) override {
    if (bytes == 0) return nullptr;
    // Every byte is zeroed below, so a block larger than physical memory cannot work: say so rather than let
    // an overcommitted allocation end in the OOM killer or a bad_alloc.
    const std::uint64_t memory_bytes = physical_memory_bytes();
    check(memory_bytes == 0 || bytes <= memory_bytes, "a tensor needs ", bytes,
          " bytes, more than this machine's memory (", memory_bytes, " bytes)");
    const std::uint64_t rounded = checked_add(bytes, std::uint64_t{63}, "tensor bytes") / 64 * 64;
    check(rounded <= std::numeric_limits<std::size_t>::max(), "a tensor needs ", bytes,
          " bytes, more than this machine can address");
    void* memory = std::aligned_alloc(64, static_cast<std::size_t>(rounded));
    if (!memory) fail("out of memory allocating ", bytes, " bytes for a tensor");
    // Zero in parallel chunks: a serial memset of a large activation is a visible share of a step on 16
    // cores.
    const std::int64_t chunks = static_cast<std::int64_t>((rounded + (1u << 20) - 1) >> 20);
#pragma omp parallel for schedule(static) if (chunks > 4)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::size_t begin = static_cast<std::size_t>(c) << 20;
      std::memset(static_cast<char*>(memory) + begin, 0, std::min<std::size_t>(rounded - begin, 1u << 20));
    }
    return std::shared_ptr<std::byte[]>(static_cast<std::byte*>(memory), [](std::byte* p) { std::free(p); });
  }

  void copy_to_host(void* host, const void* mine, std::size_t bytes) const override {
    if (bytes) std::memcpy(host, mine, bytes);
  }
  void copy_from_host(void* mine, const void* host, std::size_t bytes) const override {
    if (bytes) std::memcpy(mine, host, bytes);
  }
};

}  // namespace

const char* device_name(Device device) {
  return device == Device::cpu ? "cpu" : "cuda";
}

Allocator& host_allocator() {
  static HeapAllocator heap;
  return heap;
}

HostArena::HostArena(std::uint64_t capacity_bytes)
    : block_(host_allocator().allocate(capacity_bytes)), capacity_(capacity_bytes) {}

std::shared_ptr<std::byte[]> HostArena::allocate(std::uint64_t bytes) {
  if (bytes == 0) return nullptr;
  const std::uint64_t rounded = checked_add(bytes, std::uint64_t{63}, "arena slice") / 64 * 64;
  check(rounded <= capacity_ - used_, "the activation arena of ", capacity_, " bytes is full: ", used_,
        " used, ", bytes, " more asked for");
  std::byte* slice = block_.get() + used_;
  // Bytes below the peak may hold an earlier step's data; above it the block is still as allocated (zero).
  if (used_ < peak_) std::memset(slice, 0, static_cast<std::size_t>(std::min(rounded, peak_ - used_)));
  used_ += rounded;
  peak_ = std::max(peak_, used_);
  ++*live_;
  // The slice keeps the block alive, so a slice outliving the arena is still valid memory.
  std::shared_ptr<std::byte[]> block = block_;
  std::shared_ptr<std::int64_t> live = live_;
  return std::shared_ptr<std::byte[]>(slice, [block, live](std::byte*) { --*live; });
}

void HostArena::copy_to_host(void* host, const void* mine, std::size_t bytes) const {
  host_allocator().copy_to_host(host, mine, bytes);
}

void HostArena::copy_from_host(void* mine, const void* host, std::size_t bytes) const {
  host_allocator().copy_from_host(mine, host, bytes);
}

void HostArena::reset() {
  check(*live_ == 0, "internal: ", *live_, " tensors of the activation arena are still alive at its reset");
  used_ = 0;
}

}  // namespace g4
