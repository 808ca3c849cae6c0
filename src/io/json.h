// json.h: strict JSON parsing of outside input (config.json, safetensors headers, index files, input files).
//
// Invariant: parse_json_strict either returns a document without duplicate object keys at any depth, or
// throws g4::Error naming `where` and the problem. It never throws anything else.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace g4 {

using Json = nlohmann::json;

Json parse_json_strict(std::string_view text, const std::string& where);
Json read_json_file(const std::string& path);

// Typed field access with errors that name the file and the key.
const Json& json_require(const Json& object, const char* key, const std::string& where);
std::int64_t json_int(const Json& value, const std::string& what, const std::string& where);
double json_number(const Json& value, const std::string& what, const std::string& where);
bool json_bool(const Json& value, const std::string& what, const std::string& where);
std::string json_string(const Json& value, const std::string& what, const std::string& where);
// `value` as JSON text for an error message: at most 80 characters, invalid UTF-8 replaced by U+FFFD (a plain
// dump() throws on it, and strings that came from YAML or raw bytes may hold any bytes).
std::string json_excerpt(const Json& value);
// `text` unchanged if it is valid UTF-8, else a g4::Error naming `where` (JSON output cannot carry it).
std::string require_utf8(std::string text, const std::string& where);

// Atomically replaces `path` with `text`: writes a fresh hidden sibling (io/output_paths.h), fsyncs, renames.
void write_text_file_atomic(const std::string& path, const std::string& text);

}  // namespace g4
