// cli_common.h: what every g4moe subcommand shares: registration and number formatting.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>

#include "core/allocator.h"
#include "core/dtype.h"
#include "model/gemma4_model.h"

namespace g4::cli {

// Each subcommand registers itself and returns the action to run when it is chosen.
using Action = std::function<int()>;

Action register_inspect(CLI::App& app);
Action register_convert(CLI::App& app);
Action register_score(CLI::App& app);
Action register_bench(CLI::App& app);
Action register_train(CLI::App& app);
Action register_init(CLI::App& app);
Action register_generate(CLI::App& app);
Action register_serve(CLI::App& app);

std::string human_count(double n);  // 25.2B, 3.81M, 512

// The allocator of `device` ("cpu" or "cuda") for a command's tensors; "cuda" installs the CUDA kernels, and
// is a g4::Error in a build without the CUDA backend or on a machine without a usable GPU.
Allocator& device_allocator(const std::string& device, const char* command);
std::string human_bytes(double n);  // 1.5 GiB

// The compute dtype of a command: "f32" or "bf16", or "auto" (f32 on the CPU, bf16 on a GPU). bf16 runs on
// the GPU only; anything else is a g4::Error.
DType compute_dtype(const std::string& dtype, const std::string& device);

// Moves the model's weights to `device` in `dtype` (nothing on the CPU), after a one-line error when the
// device cannot hold them: parameters × (dtype bytes + extra_bytes_per_parameter), `extra` saying what the
// extra bytes are for (" with f32 gradients").
void place_model(Gemma4Model& model, Allocator& device, DType dtype, const char* command,
                 double extra_bytes_per_parameter = 0, const std::string& extra = "");

}  // namespace g4::cli
