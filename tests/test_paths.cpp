#include "test_paths.h"

#include <unistd.h>
#include <filesystem>

namespace g4::test {

std::string source_path(const std::string& relative) {
  return std::string(G4_SOURCE_DIR) + "/" + relative;
}

std::string scratch_dir(const std::string& name) {
  const auto dir =
      std::filesystem::path(G4_BINARY_DIR) / "test_scratch" / (name + "." + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace g4::test
