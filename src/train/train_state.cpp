#include "train/train_state.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "io/safetensors.h"

namespace g4 {

TrainerState parse_trainer_state(const Json& doc, const std::string& where) {
  check(doc.is_object(), "trainer state must be a JSON object (", where, ")");
  auto count = [&](const char* key) {
    const std::int64_t v = json_int(json_require(doc, key, where), key, where);
    check(v >= 0, "\"", key, "\" is ", v, ", must not be negative (", where, ")");
    return v;
  };
  TrainerState s;
  s.step = count("step");
  s.data_cursor = count("data_cursor");
  s.optimizer_steps = count("optimizer_steps");
  check(s.optimizer_steps <= s.step, "\"optimizer_steps\" ", s.optimizer_steps, " exceeds \"step\" ", s.step,
        " (", where, ")");
  s.tokens_seen = json_number(json_require(doc, "tokens_seen", where), "tokens_seen", where);
  check(std::isfinite(s.tokens_seen) && s.tokens_seen >= 0, "\"tokens_seen\" must be a finite count (", where,
        ")");
  if (doc.contains("recipe")) {
    check(doc["recipe"].is_object(), "\"recipe\" must be an object (", where, ")");
    s.recipe = doc["recipe"];
  }
  return s;
}

namespace {

enum class Kind { exp_avg, exp_avg_sq, master };

Tensor read_checked(const SafetensorsFile& file, const TensorInfo& info, const Shape& shape, Kind kind) {
  check(info.dtype == DType::f32, "tensor ", info.name, " has dtype ", dtype_name(info.dtype),
        ", expected F32 (", file.path(), ")");
  check(info.shape == shape, "tensor ", info.name, " has shape ", shape_str(info.shape), " but the model's ",
        "parameter has ", shape_str(shape), " (", file.path(), "; is it from another model?)");
  Tensor t = file.read(info);
  const float* v = t.f32();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    check(std::isfinite(v[i]), "tensor ", info.name, " holds a non-finite value at element ", i, " (",
          file.path(), ")");
    check(kind != Kind::exp_avg_sq || v[i] >= 0, "tensor ", info.name, " holds a negative second moment at ",
          "element ", i, " (", file.path(), ")");
  }
  return t;
}

}  // namespace

OptimizerFile read_optimizer_file(const std::string& path, const std::map<std::string, Shape>& expected,
                                  bool expect_masters) {
  const auto file = SafetensorsFile::open(path);
  OptimizerFile out;
  std::set<std::string> seen;
  for (const TensorInfo& info : file->tensors()) {
    Kind kind = Kind::exp_avg;
    std::string name;
    for (const auto& [prefix, k] : {std::pair<std::string, Kind>{"exp_avg.", Kind::exp_avg},
                                    {"exp_avg_sq.", Kind::exp_avg_sq},
                                    {"master.", Kind::master}}) {
      if (info.name.rfind(prefix, 0) == 0) {
        kind = k;
        name = info.name.substr(prefix.size());
      }
    }
    check(!name.empty(), "unexpected tensor ", info.name, " (", path, ")");
    const auto it = expected.find(name);
    check(it != expected.end(), "tensor ", info.name, " names no trainable parameter of this model (", path,
          "; was the parameter frozen when it was written, or is the file from another model?)");
    check(kind != Kind::master || expect_masters, "unexpected tensor ", info.name, " (", path,
          "): the checkpoint's weights are fp32, so it holds no master weights");
    Tensor t = read_checked(*file, info, it->second, kind);
    seen.insert(info.name);
    if (kind == Kind::master)
      out.masters[name] = t;
    else
      (kind == Kind::exp_avg ? out.moments[name].first : out.moments[name].second) = t;
  }
  for (const auto& [name, shape] : expected) {
    for (const char* prefix : {"exp_avg.", "exp_avg_sq."})
      check(seen.count(prefix + name) != 0, "missing tensor ", prefix, name, " (", path,
            "; a trainable parameter without its optimizer state: was it frozen when it was written?)");
    check(!expect_masters || seen.count("master." + name) != 0, "missing tensor master.", name, " (", path,
          "): the fp32 weights of a checkpoint stored in a narrower dtype");
  }
  return out;
}

}  // namespace g4
