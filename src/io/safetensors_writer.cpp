#include "io/safetensors_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "io/json.h"
#include "io/output_paths.h"

namespace g4 {

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorDecl> tensors,
                                     std::map<std::string, std::string> metadata)
    : path_(std::move(path)), tmp_path_(temporary_sibling(path_)), tensors_(std::move(tensors)) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const TensorDecl& t : tensors_) {
    check(!header.contains(t.name), "tensor ", t.name, " declared twice (", path_, ")");
    const std::uint64_t end =
        checked_add(offset, t.nbytes(), "data offsets of tensor ", t.name, " (", path_, ")");
    header[t.name] = {
        {"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // align the data section to 8 bytes
  out_ = std::fopen(tmp_path_.c_str(), "wbx");  // exclusive: never truncates a file that is not ours
  check(out_ != nullptr, "cannot create ", tmp_path_, ": ", std::strerror(errno));
  unsigned char length[8];
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(n >> (8 * i));
  write_bytes(length, 8);
  write_bytes(text.data(), text.size());
}

SafetensorsWriter::~SafetensorsWriter() {
  if (out_) {
    std::fclose(out_);
    std::remove(tmp_path_.c_str());
  }
}

void SafetensorsWriter::write_bytes(const void* data, std::size_t n) {
  if (n && std::fwrite(data, 1, n, out_) != n) {
    const int err = errno;
    std::fclose(out_);
    out_ = nullptr;
    std::remove(tmp_path_.c_str());
    fail("cannot write ", tmp_path_, ": ", std::strerror(err));
  }
}

void SafetensorsWriter::write(const std::string& name, const void* data) {
  check(out_ != nullptr, "writer for ", path_, " is closed");
  check(next_ < tensors_.size() && tensors_[next_].name == name, "tensor ", name,
        " written out of declaration order (", path_, ")");
  write_bytes(data, tensors_[next_].nbytes());
  ++next_;
}

void SafetensorsWriter::finish() {
  check(out_ != nullptr, "writer for ", path_, " is closed");
  check(next_ == tensors_.size(), "only ", next_, " of ", tensors_.size(), " tensors written (", path_, ")");
  const bool ok = std::fflush(out_) == 0 && ::fsync(fileno(out_)) == 0;
  const int err = errno;
  std::fclose(out_);
  out_ = nullptr;
  if (!ok || std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_path_.c_str());
    fail("cannot write ", path_, ": ", std::strerror(ok ? errno : err));
  }
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorDecl> decls;
  for (const auto& [name, t] : tensors) decls.push_back({name, t.dtype(), t.shape()});
  SafetensorsWriter writer(path, decls, metadata);
  for (const auto& [name, t] : tensors) writer.write(name, t.bytes());
  writer.finish();
}

ShardedWriter::ShardedWriter(std::string dir, std::vector<TensorDecl> tensors, std::uint64_t max_shard_bytes)
    : dir_(std::move(dir)), tensors_(std::move(tensors)) {
  // Greedy packing in declaration order: a new shard starts when the next tensor would overflow this one.
  std::uint64_t in_shard = 0;
  std::size_t shard = 0;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const std::uint64_t bytes = tensors_[i].nbytes();
    if (in_shard > 0 && (bytes > max_shard_bytes || in_shard > max_shard_bytes - bytes)) {
      ++shard;
      in_shard = 0;
    }
    in_shard = checked_add(in_shard, bytes, "shard of tensor ", tensors_[i].name, " (", dir_, ")");
    shard_of_.push_back(shard);
  }
  const std::size_t count = tensors_.empty() ? 1 : shard + 1;
  for (std::size_t s = 0; s < count; ++s) {
    if (count == 1) {
      shard_names_.push_back("model.safetensors");
    } else {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, count);
      shard_names_.push_back(name);
    }
  }
  std::filesystem::create_directories(dir_);
  if (tensors_.empty()) open_shard(0);
}

void ShardedWriter::open_shard(std::size_t shard) {
  if (writer_) writer_->finish();
  std::vector<TensorDecl> decls;
  for (std::size_t i = 0; i < tensors_.size(); ++i)
    if (shard_of_[i] == shard) decls.push_back(tensors_[i]);
  writer_ = std::make_unique<SafetensorsWriter>(dir_ + "/" + shard_names_[shard], decls);
  open_shard_ = shard;
}

void ShardedWriter::write(const std::string& name, const void* data) {
  check(next_ < tensors_.size(), "tensor ", name, " written after the last declared one (", dir_, ")");
  if (shard_of_[next_] != open_shard_) open_shard(shard_of_[next_]);
  writer_->write(name, data);
  ++next_;
}

void ShardedWriter::finish() {
  check(next_ == tensors_.size(), "only ", next_, " of ", tensors_.size(), " tensors written (", dir_, ")");
  if (writer_) writer_->finish();
  writer_.reset();
  const std::string index_path = dir_ + "/model.safetensors.index.json";
  if (shard_names_.size() > 1) {
    std::uint64_t total = 0;
    Json map = Json::object();
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      total = checked_add(total, tensors_[i].nbytes(), "total size (", dir_, ")");
      map[tensors_[i].name] = shard_names_[shard_of_[i]];
    }
    Json index = {{"metadata", {{"total_size", total}}}, {"weight_map", map}};
    write_text_file_atomic(index_path, index.dump(2) + "\n");
  } else {
    std::filesystem::remove(index_path);  // a stale index would point at shards that are not ours
  }
}

}  // namespace g4
