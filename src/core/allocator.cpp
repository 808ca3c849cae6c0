#include "core/allocator.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/checked_math.h"
#include "core/error.h"
#include "core/host_memory.h"

namespace g4 {

std::uint64_t Allocator::available_bytes() const {
  const std::uint64_t physical = physical_memory_bytes();
  return physical == 0 ? std::numeric_limits<std::uint64_t>::max() : physical;
}

void require_available(const Allocator& allocator, double bytes, const std::string& what,
                       const std::string& detail) {
  const auto available = static_cast<double>(allocator.available_bytes());
  const double gib = 1024.0 * 1024.0 * 1024.0;
  check(bytes <= available, what, " needs about ", std::round(bytes / gib * 10) / 10, " GiB of ",
        device_name(allocator.device()), " memory (", detail, "), and only ",
        std::round(available / gib * 10) / 10, " GiB are free");
}

namespace {

class HeapAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu; }

  std::shared_ptr<std::byte[]> allocate(std::uint64_t bytes) override {
    if (bytes == 0) return nullptr;
    const std::uint64_t rounded = checked_add(bytes, std::uint64_t{63}, "tensor bytes") / 64 * 64;
    void* memory = allocate_host_block(rounded);
    if (!memory) fail("out of memory allocating ", bytes, " bytes for a tensor");
    zero_host_block(memory, rounded);
    return std::shared_ptr<std::byte[]>(static_cast<std::byte*>(memory), [](std::byte* p) { std::free(p); });
  }

  void copy_to_host(void* host, const void* mine, std::size_t bytes) const override {
    if (bytes) std::memcpy(host, mine, bytes);
  }
  void copy_from_host(void* mine, const void* host, std::size_t bytes) const override {
    if (bytes) std::memcpy(mine, host, bytes);
  }
};

thread_local Allocator* cpu_activations = nullptr;
thread_local Allocator* cuda_activations = nullptr;

Allocator*& activation_slot(Device device) {
  return device == Device::cpu ? cpu_activations : cuda_activations;
}

}  // namespace

const char* device_name(Device device) {
  return device == Device::cpu ? "cpu" : "cuda";
}

Allocator& host_allocator() {
  static HeapAllocator heap;
  return heap;
}

void* allocate_host_block(std::uint64_t bytes) {
  // Every byte is zeroed, so a block larger than physical memory cannot work: say so rather than let an
  // overcommitted allocation end in the OOM killer or a bad_alloc.
  const std::uint64_t memory_bytes = physical_memory_bytes();
  check(memory_bytes == 0 || bytes <= memory_bytes, "a tensor needs ", bytes,
        " bytes, more than this machine's memory (", memory_bytes, " bytes)");
  check(bytes <= std::numeric_limits<std::size_t>::max(), "a tensor needs ", bytes,
        " bytes, more than this machine can address");
  return std::aligned_alloc(64, static_cast<std::size_t>(bytes));
}

void zero_host_block(void* block, std::uint64_t bytes) {
  // Parallel chunks: a serial memset of a large activation is a visible share of a step on 16 cores.
  const std::int64_t chunks = static_cast<std::int64_t>((bytes + (1u << 20) - 1) >> 20);
#pragma omp parallel for schedule(static) if (chunks > 4)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::size_t begin = static_cast<std::size_t>(c) << 20;
    std::memset(static_cast<char*>(block) + begin, 0, std::min<std::size_t>(bytes - begin, 1u << 20));
  }
}

namespace {
std::atomic<Allocator*> cuda_default{nullptr};
}  // namespace

void set_default_activation_allocator(Allocator& allocator) {
  check(allocator.device() != Device::cpu, "the host's default activation allocator is host_allocator()");
  cuda_default = &allocator;
}

Allocator& activation_allocator(Device device) {
  if (Allocator* installed = activation_slot(device)) return *installed;
  if (device == Device::cpu) return host_allocator();
  if (Allocator* fallback = cuda_default.load()) return *fallback;
  fail("no activation allocator is installed for the ", device_name(device), " device");
}

ActivationScope::ActivationScope(Allocator& allocator)
    : previous_(activation_slot(allocator.device())), device_(allocator.device()) {
  activation_slot(device_) = &allocator;
}

ActivationScope::~ActivationScope() {
  activation_slot(device_) = previous_;
}

}  // namespace g4
