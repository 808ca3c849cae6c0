#include "train/recipe_yaml.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace g4 {

namespace {

// Walks the parsed YAML graph; an alias is visited once per use, so `nodes` counts the expanded tree.
struct Expansion {
  std::string where;
  std::int64_t nodes = 0;

  Json convert(const YAML::Node& node, int depth) {
    check(depth <= kMaxYamlDepth, "YAML nested deeper than ", kMaxYamlDepth, " levels (", where, ")");
    check(++nodes <= kMaxYamlNodes, "YAML expands to more than ", kMaxYamlNodes, " nodes (nested aliases?) (",
          where, ")");
    switch (node.Type()) {
      case YAML::NodeType::Map: {
        Json out = Json::object();
        for (const auto& kv : node) {
          check(kv.first.IsScalar(), "a YAML mapping key must be a plain value (", where, ")");
          const std::string key = require_utf8(kv.first.Scalar(), where);
          check(!out.contains(key), "key \"", key, "\" is given twice (", where, ")");
          out[key] = convert(kv.second, depth + 1);
        }
        return out;
      }
      case YAML::NodeType::Sequence: {
        Json out = Json::array();
        for (const auto& v : node) out.push_back(convert(v, depth + 1));
        return out;
      }
      case YAML::NodeType::Scalar:
        return scalar(node);
      default:
        return nullptr;
    }
  }

  Json scalar(const YAML::Node& node) const {
    const std::string s = require_utf8(node.Scalar(), where);
    if (node.Tag() == "!") return s;  // quoted: a string
    if (s == "true" || s == "false") return s == "true";
    if (s == "null" || s == "~") return nullptr;
    try {
      std::size_t used = 0;
      const long long i = std::stoll(s, &used);
      if (used == s.size()) return i;
    } catch (const std::exception&) {
    }
    try {
      std::size_t used = 0;
      const double d = std::stod(s, &used);
      if (used == s.size()) return d;
    } catch (const std::exception&) {
    }
    return s;
  }
};

}  // namespace

Json parse_yaml_text(const std::string& text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("invalid YAML (", where, "): ", e.what());
  }
  try {
    return Expansion{where}.convert(root, 0);
  } catch (const YAML::Exception& e) {  // yaml-cpp resolves some nodes lazily
    fail("invalid YAML (", where, "): ", e.what());
  }
}

Json read_yaml_file(const std::string& path) {
  std::error_code ec;
  check(!std::filesystem::is_directory(path, ec), "recipe ", path, " is a directory, not a YAML file");
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open recipe ", path, ": ", std::strerror(errno));
  std::string text;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    check(static_cast<std::int64_t>(text.size()) <= kMaxRecipeBytes, "recipe ", path, " is larger than ",
          kMaxRecipeBytes >> 20, " MiB");
  }
  return parse_yaml_text(text, path);
}

}  // namespace g4
