// test_paths.h: where tests find committed data and may write scratch files.
#pragma once

#include <string>

namespace g4::test {

std::string source_path(const std::string& relative);  // <repo>/relative
std::string scratch_dir(const std::string& name);      // a fresh, empty directory under the build tree

}  // namespace g4::test
