// allocator.h: where a tensor's bytes live. Every Tensor is allocated through an Allocator that a backend
// owns: host_allocator() for the CPU (aligned, zero-filled heap blocks), caching allocators that reuse freed
// blocks (core/caching_allocator.h on the host for training steps' activations, core/cuda's on the GPU), and
// the activation allocator that op outputs come from.
//
// Invariants: allocate() returns zero-filled memory, 64-byte aligned, that stays valid while any copy of the
// returned pointer lives (the deleter gives it back to the allocator); an allocator outlives nothing it
// handed out (the deleters keep what they need alive); copies between a device and the host go through the
// allocator of the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace g4 {

enum class Device { cpu, cuda };
const char* device_name(Device device);  // "cpu", "cuda"

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  // `bytes` zero-filled bytes (nullptr for 0); a g4::Error when the device cannot hold them.
  virtual std::shared_ptr<std::byte[]> allocate(std::uint64_t bytes) = 0;
  // Copies `bytes` from this allocator's memory to the host, and the other way.
  virtual void copy_to_host(void* host, const void* mine, std::size_t bytes) const = 0;
  virtual void copy_from_host(void* mine, const void* host, std::size_t bytes) const = 0;
  // Waits until every operation queued on this allocator's device has finished (timing, peak memory); the
  // host has nothing queued.
  virtual void synchronize() const {}
  // Bytes this allocator could still hand out (a GPU's free memory plus its own cache), for a run's up-front
  // memory check; the host answers its physical memory.
  virtual std::uint64_t available_bytes() const;
};

// A one-line g4::Error when `allocator` cannot hold `bytes` up front: "<what> needs about X GiB of <device>
// memory (<detail>), and only Y GiB are free". Activations come on top; this catches what cannot fit at all.
void require_available(const Allocator& allocator, double bytes, const std::string& what,
                       const std::string& detail);

// The process's host allocator (thread-safe; aligned_alloc, refuses more than the machine's memory).
Allocator& host_allocator();

// The allocator op outputs (activations) on `device` come from on this thread: the one an ActivationScope
// installed for that device, else the device's default (host_allocator() for the CPU, the backend's own
// for a GPU once set_default_activation_allocator ran; a g4::Error for a device without one).
Allocator& activation_allocator(Device device);
// Makes `allocator` the default activation allocator of a device other than the host's (the CUDA backend
// installs its caching allocator when its kernels are installed, ops/cuda/kernels.h). Process-wide.
void set_default_activation_allocator(Allocator& allocator);

// Installs `allocator` as its device's activation allocator on this thread until the scope ends (scopes
// nest; the previous one comes back). Training installs a caching allocator (core/caching_allocator.h) for
// its steps, so each step's activations reuse the previous step's blocks.
class ActivationScope {
 public:
  explicit ActivationScope(Allocator& allocator);
  ~ActivationScope();
  ActivationScope(const ActivationScope&) = delete;
  ActivationScope& operator=(const ActivationScope&) = delete;

 private:
  Allocator* previous_;
  Device device_;
};

// Host block primitives shared by the host allocators: a 64-byte-aligned block of `bytes` (a multiple of 64)
// or nullptr when the heap refuses it (a g4::Error when it exceeds the machine's memory), and zero-filling
// in parallel chunks.
void* allocate_host_block(std::uint64_t bytes);
void zero_host_block(void* block, std::uint64_t bytes);

}  // namespace g4
