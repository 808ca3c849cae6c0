#include "test_paths.h"

#include <unistd.h>
#include <cstdlib>
#include <filesystem>

namespace g4::test {

// The checkout the tests read: $G4_SOURCE_DIR if set, else the one this binary was configured from, else the
// working directory (a binary built here and carried to another machine runs from that machine's checkout).
std::string source_path(const std::string& relative) {
  if (const char* env = std::getenv("G4_SOURCE_DIR"); env && *env) return std::string(env) + "/" + relative;
  if (std::filesystem::exists(G4_SOURCE_DIR)) return std::string(G4_SOURCE_DIR) + "/" + relative;
  return (std::filesystem::current_path() / relative).string();
}

std::string scratch_dir(const std::string& name) {
  const auto dir =
      std::filesystem::path(G4_BINARY_DIR) / "test_scratch" / (name + "." + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace g4::test
