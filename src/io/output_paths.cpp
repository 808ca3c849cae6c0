#include "io/output_paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace g4 {

namespace fs = std::filesystem;

std::string temporary_sibling(const std::string& final_path) {
  static std::atomic<unsigned> counter{0};
  fs::path p = fs::path(final_path).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "dir/" names dir
  std::string name(1, '.');  // appended piecewise: GCC 12 warns (-Wrestrict) on "literal" + std::string
  name.append(p.filename().string()).append(".tmp-").append(std::to_string(::getpid()));
  name.append("-").append(std::to_string(counter++));
  return (p.parent_path() / name).string();
}

std::string create_temporary_directory(const std::string& final_dir) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string tmp = temporary_sibling(final_dir);
    if (::mkdir(tmp.c_str(), 0755) == 0) return tmp;
    if (errno != EEXIST) fail("cannot create ", tmp, ": ", std::strerror(errno));
  }
  fail("cannot find a free temporary name beside ", final_dir);
}

void refuse_existing_output(const std::string& path, bool overwrite, const std::string& how) {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(path, ec);
  if (ec || !fs::exists(st) || overwrite) return;
  if (fs::is_directory(st)) {
    std::size_t entries = 0;
    for (auto it = fs::directory_iterator(path, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      ++entries;
    if (entries == 0) return;
    fail(path, " already exists and holds ", entries, entries == 1 ? " entry" : " entries",
         "; nothing was written: ", how);
  }
  fail(path, " already exists (", fs::is_regular_file(st) ? "a file" : "not a directory",
       "); nothing was written: ", how);
}

void replace_directory(const std::string& ready, const std::string& final_dir) {
  std::error_code ec;
  std::string old;
  if (fs::exists(fs::symlink_status(final_dir, ec))) {
    old = temporary_sibling(final_dir);
    fs::rename(final_dir, old, ec);
    check(!ec, "cannot move ", final_dir, " aside: ", ec.message());
  }
  fs::rename(ready, final_dir, ec);
  if (ec) {
    const std::string why = ec.message();
    if (!old.empty()) fs::rename(old, final_dir, ec);  // put the previous contents back
    fail("cannot rename ", ready, " to ", final_dir, ": ", why);
  }
  if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace g4
