// allocator.h: where a tensor's bytes live. Every Tensor is allocated through an Allocator that a backend
// owns: host_allocator() for the CPU (aligned, zero-filled heap blocks), HostArena for activations planned
// per step (one block handed out in slices and reused), and on the GPU the caching allocator of core/cuda.
//
// Invariants: allocate() returns zero-filled memory, 64-byte aligned, that stays valid while any copy of the
// returned pointer lives (the deleter gives it back to the allocator); an allocator outlives nothing it
// handed out (the deleters keep what they need alive); copies between a device and the host go through the
// allocator of the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

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
};

// The process's host allocator (thread-safe; aligned_alloc, refuses more than the machine's memory).
Allocator& host_allocator();

// A bump arena on the host: allocate() hands out consecutive 64-byte-aligned slices of one block reserved up
// front, so the activations of a step are planned rather than found; reset() makes the whole block free again
// for the next step and is an error while any slice is still alive (a tensor that escaped its step).
class HostArena final : public Allocator {
 public:
  explicit HostArena(std::uint64_t capacity_bytes);
  Device device() const override { return Device::cpu; }
  std::shared_ptr<std::byte[]> allocate(std::uint64_t bytes) override;  // g4::Error when the block is full
  void copy_to_host(void* host, const void* mine, std::size_t bytes) const override;
  void copy_from_host(void* mine, const void* host, std::size_t bytes) const override;
  void reset();
  std::uint64_t used_bytes() const { return used_; }
  std::uint64_t peak_bytes() const { return peak_; }
  std::int64_t live_slices() const { return *live_; }

 private:
  std::shared_ptr<std::byte[]> block_;
  std::uint64_t capacity_ = 0, used_ = 0, peak_ = 0;
  std::shared_ptr<std::int64_t> live_ = std::make_shared<std::int64_t>(0);
};

}  // namespace g4
