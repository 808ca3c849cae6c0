// device_buffer.h: owning device memory (DeviceBuffer) and a bump arena for per-step scratch (DeviceArena).
//
// Invariants: a DeviceBuffer owns exactly one zero-filled block of bytes() bytes (or none when empty) from
// the GPU's caching allocator (core/cuda/caching_allocator.h, so that its statistics count every buffer of
// the CUDA layers too) and gives it back in its destructor; it is movable, not copyable. The constructor
// waits for the legacy default stream, so its zeros are there for any stream; a buffer that a non-blocking
// stream uses must not be destroyed before that stream's work on it has finished (the block is reused at
// once). A DeviceArena hands out 256-byte aligned slices of one allocation; slices stay valid until reset()
// or destruction, and alloc() throws g4::Error when the arena is full (memory is planned, not discovered:
// size the arena from the shapes, see moe_experts.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

namespace g4::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { swap(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    DeviceBuffer tmp(std::move(other));
    swap(tmp);
    return *this;
  }

  void* data() const { return data_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void swap(DeviceBuffer& other) noexcept {
    std::swap(block_, other.block_);
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
  }
  std::shared_ptr<std::byte[]> block_;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

class DeviceArena {
 public:
  static constexpr std::size_t alignment = 256;
  explicit DeviceArena(std::size_t bytes) : buffer_(bytes) {}

  void* alloc(std::size_t bytes);
  template <class T>
  T* alloc(std::size_t count) {
    return static_cast<T*>(alloc(count * sizeof(T)));
  }
  void reset() { used_ = 0; }
  std::size_t used() const { return used_; }
  std::size_t capacity() const { return buffer_.bytes(); }
  static std::size_t aligned(std::size_t bytes) { return (bytes + alignment - 1) / alignment * alignment; }

 private:
  DeviceBuffer buffer_;
  std::size_t used_ = 0;
};

}  // namespace g4::cuda
