// cmd_convert.cpp: `g4moe convert --to native|hf IN OUT`: a checkpoint directory from the Hugging Face
// layout to g4moe's native MoE layout (NeMo key names, experts [E,H,2I]/[E,I,H], per_expert_scale folded into
// down_projs) or back. Streaming: one tensor at a time is read in place from the memory-mapped input and
// written; only a transposed tensor is allocated, so memory beyond the mapped input stays at the largest
// output tensor. The output is built in a temporary sibling directory and renamed into place at the end: OUT
// appears complete or not at all. Other files (config.json, generation_config.json, tokenizer files) are
// copied unchanged.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/finite.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/output_paths.h"
#include "io/safetensors_writer.h"
#include "moe/state_dict_adapter.h"

namespace g4::cli {

namespace {

namespace fs = std::filesystem;

class ProgressBar {
 public:
  ProgressBar(std::size_t total_steps, double total_bytes)
      : total_(total_steps), total_bytes_(total_bytes), tty_(isatty(fileno(stderr)) != 0) {}
  void update(std::size_t done, double bytes) {
    if (!tty_) return;
    const int width = 30;
    const int filled = total_ ? static_cast<int>(width * done / total_) : width;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\rconverting [%s] %zu/%zu tensors, %s / %s", bar.c_str(), done, total_,
                 human_bytes(bytes).c_str(), human_bytes(total_bytes_).c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void finish() {
    if (shown_) std::fprintf(stderr, "\n");
    shown_ = false;
  }
  ~ProgressBar() { finish(); }  // keeps an error message on its own line

 private:
  std::size_t total_;
  double total_bytes_;
  bool tty_;
  bool shown_ = false;
};

// Removes a directory tree unless release() was called.
struct TempDirGuard {
  fs::path path;
  bool armed = true;
  ~TempDirGuard() {
    if (!armed) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bool is_weight_file(const fs::path& p) {
  const std::string name = p.filename().string();
  return p.extension() == ".safetensors" || name == "model.safetensors.index.json" ||
         (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0);
}

// A NaN or infinite weight is refused (a converted checkpoint that cannot produce a finite loss is no use)
// unless the user passed --allow-non-finite.
void refuse_non_finite(const void* data, const TensorDecl& decl, const std::string& name,
                       const Checkpoint& ckpt) {
  const std::int64_t at = first_non_finite(data, decl.dtype, shape_numel(decl.shape));
  check(at < 0, "tensor ", name, " holds a non-finite value (element ", at, ") in ", ckpt.dir(),
        "; nothing was written (pass --allow-non-finite to convert it anyway)");
}

int run_convert(const std::string& to_name, const std::string& in, const std::string& out,
                std::uint64_t max_shard_bytes, bool allow_non_finite) {
  check(to_name == "native" || to_name == "hf", "--to must be native or hf, not \"", to_name, "\"");
  const Layout to = to_name == "native" ? Layout::native : Layout::hf;
  check(fs::is_directory(in), "not a checkpoint directory: ", in);
  const ModelConfig config = load_config(in);
  const Checkpoint ckpt = Checkpoint::open(in);
  check(max_shard_bytes > 0, "--max-shard-size must be positive");

  fs::path out_path = fs::absolute(out).lexically_normal();
  if (out_path.has_filename() == false) out_path = out_path.parent_path();
  std::error_code ec;
  refuse_existing_output(out_path.string(), false, "choose another OUT (convert never replaces a directory)");
  check(!fs::equivalent(fs::absolute(in), out_path, ec), "output ", out, " is the input directory");
  check(fs::is_directory(out_path.parent_path()), "parent of the output ", out, " is not a directory");

  std::map<std::string, TensorMeta> metas;
  for (const std::string& name : ckpt.names()) metas[name] = {ckpt.info(name).dtype, ckpt.info(name).shape};
  AdapterOptions opts;
  opts.text_prefix = config.text_prefix;
  opts.log = [](const std::string& line) { std::fprintf(stderr, "g4moe: note: %s\n", line.c_str()); };
  const std::vector<ConversionStep> steps = plan_conversion(metas, to, opts, in);

  TempDirGuard tmp{create_temporary_directory(out_path.string())};

  std::vector<TensorDecl> decls;
  double total_bytes = 0;
  for (const ConversionStep& s : steps) {
    decls.push_back({s.out_name, s.dtype, s.shape});
    total_bytes += static_cast<double>(decls.back().nbytes());
  }
  {
    ShardedWriter writer(tmp.path.string(), decls, max_shard_bytes);
    ProgressBar progress(steps.size(), total_bytes);
    // Inputs are read in place from the memory-mapped shards; renamed tensors are written straight from the
    // map.
    const std::function<TensorSource(const std::string&)> read = [&](const std::string& name) {
      const TensorView v = ckpt.view(name);
      return TensorSource{v.info->dtype, v.info->shape, v.data};
    };
    double done_bytes = 0;
    for (std::size_t i = 0; i < steps.size(); ++i) {
      if (steps[i].op == ConversionStep::Op::copy) {
        const TensorSource src = read(steps[i].source);
        if (!allow_non_finite) refuse_non_finite(src.data, decls[i], steps[i].source, ckpt);
        writer.write(steps[i].out_name, src.data);
      } else {
        const Tensor t = run_conversion_step(steps[i], read);
        check(t.dtype() == decls[i].dtype && t.shape() == decls[i].shape, "internal: tensor ",
              steps[i].out_name, " came out as ", shape_str(t.shape()), " instead of ",
              shape_str(decls[i].shape));
        if (!allow_non_finite) refuse_non_finite(t.bytes(), decls[i], steps[i].out_name, ckpt);
        writer.write(steps[i].out_name, t.bytes());
      }
      done_bytes += static_cast<double>(decls[i].nbytes());
      progress.update(i + 1, done_bytes);
    }
    writer.finish();
  }
  // Everything else in the input directory travels unchanged (config, generation config, tokenizer).
  for (const auto& entry : fs::directory_iterator(in)) {
    if (!entry.is_regular_file() || is_weight_file(entry.path())) continue;
    fs::copy_file(entry.path(), tmp.path / entry.path().filename(), fs::copy_options::overwrite_existing);
  }
  if (fs::exists(out_path)) fs::remove(out_path);  // an empty directory (checked above)
  fs::rename(tmp.path, out_path);
  tmp.armed = false;
  std::cout << "wrote " << steps.size() << " tensors (" << human_bytes(total_bytes) << ") in the "
            << (to == Layout::native ? "native" : "HF") << " layout to " << out << "\n";
  return 0;
}

}  // namespace

Action register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "Convert a checkpoint directory between the Hugging Face layout and g4moe's native MoE layout "
      "(streaming, atomic).");
  auto to = std::make_shared<std::string>();
  auto in = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto max_shard = std::make_shared<std::uint64_t>(5'000'000'000ull);
  auto allow_non_finite = std::make_shared<bool>(false);
  cmd->add_option("--to", *to, "target layout: native or hf")->required();
  cmd->add_option("IN", *in, "input checkpoint directory")->required();
  cmd->add_option("OUT", *out, "output directory (must not exist, or be empty)")->required();
  cmd->add_option("--max-shard-size", *max_shard, "largest shard in bytes (default 5000000000)");
  cmd->add_flag("--allow-non-finite", *allow_non_finite,
                "write the checkpoint even if a weight is NaN or infinite (by default that is an error)");
  return [=] { return run_convert(*to, *in, *out, *max_shard, *allow_non_finite); };
}

}  // namespace g4::cli
