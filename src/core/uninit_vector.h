// uninit_vector.h: a std::vector whose resize() leaves new elements uninitialised (default-initialised), for
// large scratch buffers that the next kernel overwrites completely. Saves a serial zero-fill per resize;
// the pages are first touched by the (parallel) kernel that writes them.
// Invariant: code that uses one must write every element before reading it.
#pragma once

#include <memory>
#include <vector>

namespace g4 {

template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  using std::allocator<T>::allocator;
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <class T>
using UninitVector = std::vector<T, DefaultInitAllocator<T>>;

}  // namespace g4
