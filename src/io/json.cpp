#include "io/json.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "io/output_paths.h"

namespace g4 {

Json parse_json_strict(std::string_view text, const std::string& where) {
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        keys_per_object.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!keys_per_object.empty()) keys_per_object.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys_per_object.empty() && !keys_per_object.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  Json doc;
  try {
    doc = Json::parse(text.begin(), text.end(), callback);
  } catch (const Json::exception& e) {
    std::string message = e.what();
    // nlohmann messages start with "[json.exception.parse_error.101] "; keep the readable part.
    if (auto pos = message.find("] "); pos != std::string::npos) message = message.substr(pos + 2);
    fail("invalid JSON (", where, "): ", message);
  }
  check(duplicate.empty(), "duplicate key \"", duplicate, "\" (", where, ")");
  return doc;
}

Json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open ", path, ": ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_json_strict(text.str(), path);
}

const Json& json_require(const Json& object, const char* key, const std::string& where) {
  check(object.is_object(), "expected a JSON object (", where, ")");
  auto it = object.find(key);
  check(it != object.end(), "missing key \"", key, "\" (", where, ")");
  return *it;
}

// Integers, and floats with an integral value (2.0), within int64's range; anything else (1e49, an unsigned
// above 2^63 - 1) is an error rather than an out-of-range conversion.
std::int64_t json_int(const Json& value, const std::string& what, const std::string& where) {
  if (value.is_number_unsigned()) {
    if (value.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)) return value.get<std::int64_t>();
  } else if (value.is_number_integer()) {
    return value.get<std::int64_t>();
  } else if (value.is_number_float()) {
    const double d = value.get<double>();
    if (d >= -0x1p63 && d < 0x1p63 && d == std::trunc(d)) return static_cast<std::int64_t>(d);
  }
  fail("\"", what, "\" must be an integer, got ", json_excerpt(value), " (", where, ")");
}

double json_number(const Json& value, const std::string& what, const std::string& where) {
  check(value.is_number(), "\"", what, "\" must be a number, got ", json_excerpt(value), " (", where, ")");
  return value.get<double>();
}

bool json_bool(const Json& value, const std::string& what, const std::string& where) {
  check(value.is_boolean(), "\"", what, "\" must be true or false, got ", json_excerpt(value), " (", where,
        ")");
  return value.get<bool>();
}

std::string json_string(const Json& value, const std::string& what, const std::string& where) {
  check(value.is_string(), "\"", what, "\" must be a string, got ", json_excerpt(value), " (", where, ")");
  return value.get<std::string>();
}

std::string json_excerpt(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

std::string require_utf8(std::string text, const std::string& where) {
  try {
    (void)Json(text).dump();
  } catch (const Json::type_error&) {
    fail("text is not valid UTF-8: ", json_excerpt(Json(text)), " (", where, ")");
  }
  return text;
}

void write_text_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = temporary_sibling(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  check(fd >= 0, "cannot write ", path, " (creating ", tmp, "): ", std::strerror(errno));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("cannot write ", path, " (", tmp, "): ", std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!synced || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    fail("cannot write ", path, ": ", std::strerror(synced ? errno : err));
  }
}

}  // namespace g4
