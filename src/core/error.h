// error.h: the one exception type that carries a user-facing error.
//
// Invariant: the message of a g4::Error is one line, says what is wrong and where (file, tensor, line),
// and never ends with a newline. The CLI prints it as `g4moe: error: <message>` and exits with code 2.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace g4 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Escapes control characters (newlines included) so that a message quoting user input stays one line.
inline std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20) {
      const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[(c >> 4) & 0xf];
      out += hex[c & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// Streams every argument into one message and throws it as a g4::Error.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  throw Error(one_line(out.str()));
}

// Like assert, but for conditions that bad input can break: always on, throws g4::Error.
template <class... Parts>
void check(bool condition, const Parts&... parts) {
  if (!condition) fail(parts...);
}

}  // namespace g4
