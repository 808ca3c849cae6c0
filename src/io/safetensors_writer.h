// safetensors_writer.h: writes .safetensors files and sharded checkpoints, atomically and in a stream.
//
// Invariants: nothing appears under a final name until it is complete and fsynced (each file is written as
// a fresh hidden sibling name, io/output_paths.h, and renamed); tensors are written in the order they were
// declared, so a converter can produce one tensor at a time and never hold the whole model; a failed write
// leaves no partial file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/checked_math.h"
#include "core/tensor.h"

namespace g4 {

struct TensorDecl {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  std::uint64_t nbytes() const {
    return checked_nbytes(checked_numel(shape, "tensor ", name), dtype_size(dtype), "tensor ", name);
  }
};

// Writes one safetensors file: declare every tensor up front, then write() each in declaration order.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string path, std::vector<TensorDecl> tensors,
                    std::map<std::string, std::string> metadata = {{"format", "pt"}});
  ~SafetensorsWriter();  // removes the temporary file if finish() was not reached
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Writes the next declared tensor; `name` must match the declaration order, `data` holds nbytes() bytes.
  void write(const std::string& name, const void* data);
  // fsyncs and renames the file into place; every declared tensor must have been written.
  void finish();

 private:
  void write_bytes(const void* data, std::size_t n);
  std::string path_, tmp_path_;
  std::vector<TensorDecl> tensors_;
  std::size_t next_ = 0;
  std::FILE* out_ = nullptr;
};

// Convenience: writes whole tensors to one file.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes a checkpoint's weights into `dir`: `model.safetensors` when everything fits in `max_shard_bytes`,
// else `model-0000k-of-0000n.safetensors` shards plus `model.safetensors.index.json` (written last).
class ShardedWriter {
 public:
  ShardedWriter(std::string dir, std::vector<TensorDecl> tensors, std::uint64_t max_shard_bytes);
  void write(const std::string& name, const void* data);
  void finish();
  std::size_t num_shards() const { return shard_names_.size(); }

 private:
  void open_shard(std::size_t shard);
  std::string dir_;
  std::vector<TensorDecl> tensors_;
  std::vector<std::size_t> shard_of_;  // tensor index -> shard index
  std::vector<std::string> shard_names_;
  std::size_t next_ = 0;
  std::size_t open_shard_ = SIZE_MAX;
  std::unique_ptr<SafetensorsWriter> writer_;
};

}  // namespace g4
