// main.cpp: the g4moe command line. Subcommands live in cmd_*.cpp; this file only dispatches and turns
// errors into the one-line `g4moe: error: ...` message with exit code 2.
#include <cstdio>
#include <iostream>
#include <map>
#include <new>

#include "cli/cli_common.h"
#include "core/error.h"
#include "ops/cpu/blas_setup.h"

int main(int argc, char** argv) {
  g4::ensure_openblas_kernels(argv);
  CLI::App app{
      "g4moe: load, run, fine-tune and convert Gemma 4 (MoE first) checkpoints in Hugging Face format.",
      "g4moe"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "g4moe 0.1.0");
  std::map<std::string, g4::cli::Action> actions;
  actions["inspect"] = g4::cli::register_inspect(app);
  actions["convert"] = g4::cli::register_convert(app);
  actions["score"] = g4::cli::register_score(app);
  actions["bench"] = g4::cli::register_bench(app);
  actions["train"] = g4::cli::register_train(app);
  actions["init"] = g4::cli::register_init(app);
  actions["generate"] = g4::cli::register_generate(app);
  actions["serve"] = g4::cli::register_serve(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    for (auto* sub : app.get_subcommands()) return actions.at(sub->get_name())();
    return 2;
  } catch (const g4::Error& e) {
    std::fprintf(stderr, "g4moe: error: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "g4moe: error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "g4moe: error: %s\n", e.what());
  }
  return 2;
}
