// fuzz_harness.h: the contract every libFuzzer target checks: a parser of outside input either accepts the
// bytes or throws a g4::Error whose message is one line. Anything else (a crash, a sanitizer report, another
// exception type, a multi-line message) aborts, which libFuzzer records as a finding with its input.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/error.h"

namespace g4::fuzz {

inline std::string as_string(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// A file of this process holding `bytes`, for parsers that take a path (the same path every call).
inline std::string write_input_file(const std::string& bytes, const char* suffix) {
  static const std::string path = "/tmp/g4moe-fuzz-" + std::to_string(::getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
  return path;
}

template <class Parse>
int check_parser(Parse&& parse) {
  try {
    parse();
  } catch (const Error& e) {
    if (std::string(e.what()).find('\n') != std::string::npos) {
      std::fprintf(stderr, "g4::Error message spans several lines: %s\n", e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "a parser threw something other than g4::Error: %s\n", e.what());
    std::abort();
  }
  return 0;
}

}  // namespace g4::fuzz
