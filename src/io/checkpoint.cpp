#include "io/checkpoint.h"

#include <filesystem>

#include "core/error.h"
#include "io/json.h"

namespace g4 {

namespace fs = std::filesystem;

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint ckpt;
  ckpt.dir_ = dir;
  check(fs::is_directory(dir), "not a checkpoint directory: ", dir);
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  if (fs::exists(index_path)) {
    const std::string where = index_path.string();
    const Json index = read_json_file(where);
    const Json& map = json_require(index, "weight_map", where);
    check(map.is_object(), "\"weight_map\" must be an object (", where, ")");
    std::map<std::string, std::size_t> shard_ids;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string shard = json_string(*it, "weight_map." + it.key(), where);
      check(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..",
            "shard name \"", shard, "\" is not a file name in the checkpoint directory (", where, ")");
      if (!shard_ids.count(shard)) {
        const fs::path shard_path = fs::path(dir) / shard;
        check(fs::exists(shard_path), "missing shard ", shard_path.string(), " (listed in ", where, ")");
        shard_ids[shard] = ckpt.files_.size();
        ckpt.files_.push_back(SafetensorsFile::open(shard_path.string()));
      }
      const auto& file = ckpt.files_[shard_ids[shard]];
      const TensorInfo* info = file->find(it.key());
      check(info != nullptr, "tensor ", it.key(), " is listed in ", where, " but missing from ",
            file->path());
    }
    check(!ckpt.files_.empty(), "empty weight_map (", where, ")");
  } else if (fs::exists(single_path)) {
    ckpt.files_.push_back(SafetensorsFile::open(single_path.string()));
  } else {
    fail("no model.safetensors or model.safetensors.index.json in ", dir);
  }
  for (std::size_t f = 0; f < ckpt.files_.size(); ++f) {
    for (const TensorInfo& info : ckpt.files_[f]->tensors()) {
      auto [it, inserted] = ckpt.where_.emplace(info.name, Location{f, &info});
      check(inserted, "tensor ", info.name, " appears in both ", ckpt.files_[it->second.file]->path(),
            " and ", ckpt.files_[f]->path());
    }
  }
  return ckpt;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, loc] : where_) out.push_back(name);
  return out;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  check(it != where_.end(), "missing tensor ", name, " (", dir_, ")");
  return *it->second.info;
}

std::string Checkpoint::file_of(const std::string& name) const {
  info(name);
  return files_[where_.at(name).file]->path();
}

TensorView Checkpoint::view(const std::string& name) const {
  const TensorInfo& i = info(name);
  return files_[where_.at(name).file]->view(i);
}

Tensor Checkpoint::read(const std::string& name) const {
  const TensorInfo& i = info(name);
  return files_[where_.at(name).file]->read(i);
}

Tensor Checkpoint::read_f32(const std::string& name) const {
  const TensorInfo& i = info(name);
  check(dtype_is_float(i.dtype), "tensor ", name, " has dtype ", dtype_name(i.dtype), ", expected a float (",
        file_of(name), ")");
  Tensor t = read(name);
  return t.dtype() == DType::f32 ? t : t.to_f32();  // to_f32 of an f32 tensor would copy it once more
}

Tensor Checkpoint::read_rows_f32(const std::string& name, std::int64_t start, std::int64_t count) const {
  const TensorInfo& i = info(name);
  check(dtype_is_float(i.dtype), "tensor ", name, " has dtype ", dtype_name(i.dtype), ", expected a float (",
        file_of(name), ")");
  Tensor t = files_[where_.at(name).file]->read_rows(i, start, count);
  return t.dtype() == DType::f32 ? t : t.to_f32();
}

std::uint64_t Checkpoint::bytes_copied() const {
  std::uint64_t n = 0;
  for (const auto& f : files_) n += f->bytes_copied();
  return n;
}

}  // namespace g4
