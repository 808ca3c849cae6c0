// test_errors.h: the message of the g4::Error a call throws, for tests of error paths.
#pragma once

#include <string>

#include "core/error.h"

namespace g4::test {

// The message of the g4::Error `f` throws ("" if it throws none; any other exception propagates).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace g4::test
