#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/checked_math.h"
#include "core/error.h"
#include "io/json.h"

namespace g4 {

namespace {

// Largest header we accept (the format's reference implementation uses 100 MB).
constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;

TensorInfo parse_entry(const std::string& name, const Json& entry, std::uint64_t data_bytes,
                       const std::string& where) {
  const std::string at = where + ", tensor " + name;
  check(entry.is_object(), "header entry is not an object (", at, ")");
  TensorInfo info;
  info.name = name;
  const std::string dtype_text = json_string(json_require(entry, "dtype", at), "dtype", at);
  auto dtype = dtype_from_name(dtype_text);
  check(dtype.has_value(), "unknown dtype \"", dtype_text, "\" (", at, ")");
  info.dtype = *dtype;
  const Json& shape = json_require(entry, "shape", at);
  check(shape.is_array(), "\"shape\" must be an array (", at, ")");
  check(shape.size() <= 8, "shape has ", shape.size(), " dimensions, at most 8 are supported (", at, ")");
  for (const Json& d : shape) {
    const std::int64_t dim = json_int(d, "shape", at);
    check(dim >= 0, "negative dimension ", dim, " (", at, ")");
    info.shape.push_back(dim);
  }
  // Checked: a header may declare any shape; the product must fit before it is compared with the offsets.
  const std::uint64_t expected = checked_nbytes(checked_numel(info.shape, "shape too large (", at, ")"),
                                                dtype_size(info.dtype), "shape too large (", at, ")");
  const Json& offsets = json_require(entry, "data_offsets", at);
  check(offsets.is_array() && offsets.size() == 2, "\"data_offsets\" must be [begin, end] (", at, ")");
  const std::int64_t begin = json_int(offsets[0], "data_offsets", at);
  const std::int64_t end = json_int(offsets[1], "data_offsets", at);
  check(begin >= 0 && end >= begin, "data offsets [", begin, ", ", end, "] are not a valid range (", at, ")");
  check(static_cast<std::uint64_t>(end) <= data_bytes, "data offsets [", begin, ", ", end,
        "] run past the end of the data section (", data_bytes, " bytes; file truncated?) (", at, ")");
  info.begin = static_cast<std::uint64_t>(begin);
  info.end = static_cast<std::uint64_t>(end);
  check(info.end - info.begin == expected, "data offsets hold ", info.end - info.begin, " bytes but shape ",
        shape_str(info.shape), " x ", dtype_text, " needs ", expected, " (", at, ")");
  return info;
}

}  // namespace

std::vector<TensorInfo> parse_safetensors_image(std::span<const std::byte> image, const std::string& where,
                                                std::map<std::string, std::string>* metadata,
                                                std::size_t* data_start) {
  check(image.size() >= 8, "file too short for a safetensors header (", image.size(), " bytes) (", where,
        ")");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<std::uint8_t>(image[i]);
  check(header_len <= kMaxHeaderBytes, "header length ", header_len, " is larger than the 100 MB limit (",
        where, ")");
  check(header_len <= image.size() - 8, "header length ", header_len, " runs past the end of the file (",
        image.size(), " bytes; truncated?) (", where, ")");
  const std::string_view header_text(reinterpret_cast<const char*>(image.data() + 8), header_len);
  const Json header = parse_json_strict(header_text, where + " header");
  check(header.is_object(), "safetensors header is not a JSON object (", where, ")");
  const std::uint64_t data_bytes = image.size() - 8 - header_len;

  std::vector<TensorInfo> tensors;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      check(it->is_object(), "\"__metadata__\" must be an object of strings (", where, ")");
      for (auto m = it->begin(); m != it->end(); ++m) {
        check(m->is_string(), "\"__metadata__\" value for \"", m.key(), "\" is not a string (", where, ")");
        if (metadata) (*metadata)[m.key()] = m->get<std::string>();
      }
      continue;
    }
    tensors.push_back(parse_entry(it.key(), *it, data_bytes, where));
  }
  // Overlap check on the byte ranges sorted by start; empty tensors occupy nothing.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : tensors)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    check(by_offset[i]->begin >= by_offset[i - 1]->end, "tensors ", by_offset[i - 1]->name, " and ",
          by_offset[i]->name, " overlap in the data section (", where, ")");
  }
  // Keep file order (by offset) so that reading streams through the file.
  std::stable_sort(tensors.begin(), tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) { return a.begin < b.begin; });
  if (data_start) *data_start = 8 + header_len;
  return tensors;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY);
  check(fd >= 0, "cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("not a regular file: ", path);
  }
  file->map_size_ = static_cast<std::size_t>(st.st_size);
  if (file->map_size_ > 0) {
    void* map = ::mmap(nullptr, file->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail("cannot map ", path, ": ", std::strerror(err));
    }
    file->map_ = map;
  }
  ::close(fd);
  const std::span<const std::byte> image(static_cast<const std::byte*>(file->map_), file->map_size_);
  file->tensors_ = parse_safetensors_image(image, path, &file->metadata_, &file->data_start_);
  for (std::size_t i = 0; i < file->tensors_.size(); ++i) file->index_[file->tensors_[i].name] = i;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

TensorView SafetensorsFile::view(const TensorInfo& info) const {
  return {&info, static_cast<const std::byte*>(map_) + data_start_ + info.begin};
}

Tensor SafetensorsFile::read(const TensorInfo& info) const {
  bytes_copied_ += info.end - info.begin;
  return Tensor::from_bytes(info.dtype, info.shape, view(info).data);
}

Tensor SafetensorsFile::read_rows(const TensorInfo& info, std::int64_t start, std::int64_t count) const {
  // Written so that no sum can overflow: start <= rows, then count <= rows - start.
  check(!info.shape.empty() && start >= 0 && count >= 0 && start <= info.shape[0] &&
            count <= info.shape[0] - start,
        "rows [", start, ", +", count, ") are outside tensor ", info.name, " of shape ",
        shape_str(info.shape), " (", path_, ")");
  Shape shape = info.shape;
  shape[0] = count;
  // The header check guarantees end - begin == numel * dtype size, so a row is an exact share of it.
  const std::uint64_t row =
      info.shape[0] ? (info.end - info.begin) / static_cast<std::uint64_t>(info.shape[0]) : 0;
  bytes_copied_ += row * static_cast<std::uint64_t>(count);
  return Tensor::from_bytes(info.dtype, shape, view(info).data + row * static_cast<std::uint64_t>(start));
}

}  // namespace g4
