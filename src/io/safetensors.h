// safetensors.h: a validated, memory-mapped reader for one .safetensors file.
//
// Invariants once open() returns: the header is valid JSON without duplicate names; every tensor has a
// known dtype, a shape of non-negative dimensions, and data offsets that lie inside the data section, do
// not overlap, and hold exactly numel * dtype_size bytes. Any violation is a g4::Error naming the file.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace g4 {

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  std::uint64_t begin = 0;  // byte offsets inside the data section, [begin, end)
  std::uint64_t end = 0;
};

// Borrowed view of a tensor's bytes inside a mapped file; valid while its SafetensorsFile lives.
struct TensorView {
  const TensorInfo* info = nullptr;
  const std::byte* data = nullptr;
};

// Parses and validates a whole safetensors image held in memory (header + data). `where` names it in errors.
// Returns the tensors in file order and fills `metadata` with the "__metadata__" strings.
std::vector<TensorInfo> parse_safetensors_image(std::span<const std::byte> image, const std::string& where,
                                                std::map<std::string, std::string>* metadata,
                                                std::size_t* data_start);

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;
  TensorView view(const TensorInfo& info) const;
  // Copies the tensor into an owning Tensor of its own dtype.
  Tensor read(const TensorInfo& info) const;
  // Copies rows [start, start + count) of dim 0 only (e.g. one rank's experts of a fused [E, ...] tensor):
  // a byte range of the mapping, so no other row is touched or copied. g4::Error when out of range.
  Tensor read_rows(const TensorInfo& info, std::int64_t start, std::int64_t count) const;
  // Bytes copied out of the mapping by read/read_rows so far (views are not counted): what a load touched.
  std::uint64_t bytes_copied() const { return bytes_copied_.load(); }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::size_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  mutable std::atomic<std::uint64_t> bytes_copied_{0};
};

}  // namespace g4
