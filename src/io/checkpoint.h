// checkpoint.h: a Hugging Face checkpoint directory's weights: one model.safetensors, or shards listed by
// model.safetensors.index.json. Tensors are memory-mapped, never read twice.
//
// Invariants once open() returns: every shard named by the index exists and parses; every name in the
// index's weight_map is found in the shard it names; no tensor name appears in two shards.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace g4 {

class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // error naming the tensor if absent
  std::string file_of(const std::string& name) const;     // the shard path holding it
  TensorView view(const std::string& name) const;
  Tensor read(const std::string& name) const;      // own dtype
  Tensor read_f32(const std::string& name) const;  // widened/rounded to f32
  // Rows [start, start + count) of dim 0, widened/rounded to f32; reads only those rows' bytes.
  Tensor read_rows_f32(const std::string& name, std::int64_t start, std::int64_t count) const;
  std::uint64_t bytes_copied() const;  // over every shard (SafetensorsFile::bytes_copied)
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  struct Location {
    std::size_t file;
    const TensorInfo* info;
  };
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, Location> where_;
};

}  // namespace g4
