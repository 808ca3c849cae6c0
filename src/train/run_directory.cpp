#include "train/run_directory.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace g4 {

namespace fs = std::filesystem;

namespace {

bool is_checkpoint_name(const std::string& name) {
  return name.rfind("checkpoint-", 0) == 0 && name.size() > 11 &&
         std::all_of(name.begin() + 11, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// What of an earlier run `dir` holds, e.g. "metrics.jsonl and 3 checkpoints"; empty when nothing.
std::string earlier_run(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "";
  std::vector<std::string> found;
  for (const char* f : {"metrics.jsonl", "loss.png"})
    if (fs::exists(fs::path(dir) / f, ec)) found.push_back(f);
  std::int64_t checkpoints = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    checkpoints += is_checkpoint_name(it->path().filename().string());
  if (checkpoints)
    found.push_back(std::to_string(checkpoints) + (checkpoints == 1 ? " checkpoint" : " checkpoints"));
  std::string out;
  for (std::size_t i = 0; i < found.size(); ++i)
    out += (i ? (i + 1 == found.size() ? " and " : ", ") : "") + found[i];
  return out;
}

// The "step" of a metrics line (a double: the file is outside input), or -1 when the line is not one of ours.
double step_of(const std::string& line) {
  const Json j = Json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number()) return -1;
  return j["step"].get<double>();
}

}  // namespace

RunDirectory::RunDirectory(std::string dir, bool overwrite, std::int64_t resumed_step)
    : dir_(std::move(dir)),
      metrics_path_(dir_ + "/metrics.jsonl"),
      may_replace_(overwrite || resumed_step >= 0),
      resumed_step_(resumed_step) {
  std::error_code ec;
  check(!fs::exists(dir_, ec) || fs::is_directory(dir_, ec), "output.dir ", dir_,
        " exists and is not a directory");
  if (resumed_step < 0) {
    const std::string found = earlier_run(dir_);
    check(found.empty() || overwrite, "output.dir ", dir_, " already holds a run (", found,
          "); nothing was changed: continue it with --resume ", dir_,
          "/checkpoint-<step>, replace it with --overwrite (output.overwrite=true), or choose another "
          "output.dir");
  }
}

void RunDirectory::prepare() const {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  check(!ec, "cannot create output.dir ", dir_, ": ", ec.message());
  if (resumed_step_ < 0) {
    write_text_file_atomic(metrics_path_, "");
    return;
  }
  // Continue the run's metrics: keep the lines up to the resumed step.
  std::ifstream in(metrics_path_);
  if (!in) return;
  std::ostringstream kept;
  std::int64_t dropped = 0;
  for (std::string line; std::getline(in, line);) {
    if (step_of(line) > static_cast<double>(resumed_step_)) {
      ++dropped;
      continue;
    }
    kept << line << "\n";
  }
  if (dropped) write_text_file_atomic(metrics_path_, kept.str());
}

std::string RunDirectory::checkpoint_path(std::int64_t step) const {
  return dir_ + "/checkpoint-" + std::to_string(step);
}

bool RunDirectory::may_replace_checkpoint(std::int64_t step) const {
  return may_replace_ || std::find(written_.begin(), written_.end(), step) != written_.end();
}

std::vector<std::string> RunDirectory::checkpoint_written(std::int64_t step, std::int64_t limit) {
  written_.erase(std::remove(written_.begin(), written_.end(), step), written_.end());
  written_.push_back(step);
  std::vector<std::string> removed;
  while (limit > 0 && static_cast<std::int64_t>(written_.size()) > limit) {
    const std::string path = checkpoint_path(written_.front());
    std::error_code ec;
    fs::remove_all(path, ec);
    check(!ec, "cannot remove ", path, " (output.save_total_limit): ", ec.message());
    removed.push_back(path);
    written_.erase(written_.begin());
  }
  return removed;
}

void RunDirectory::append_metrics(const Json& line) const {
  std::ofstream out(metrics_path_, std::ios::app);
  out << line.dump() << "\n";
  out.flush();
  check(out.good(), "cannot write ", metrics_path_);
}

LossCurves RunDirectory::curves() const {
  LossCurves c;
  std::ifstream in(metrics_path_);
  for (std::string line; std::getline(in, line);) {
    const Json j = Json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number()) continue;
    const double step = j["step"].get<double>();
    for (auto [key, series] : {std::pair{"loss", &c.train}, {"eval_loss", &c.eval}, {"lr", &c.lr}})
      if (j.contains(key) && j[key].is_number()) series->emplace_back(step, j[key].get<double>());
  }
  return c;
}

}  // namespace g4
