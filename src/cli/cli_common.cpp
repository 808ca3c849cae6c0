#include "cli/cli_common.h"

#include <cstdio>

#include "core/error.h"
#include "model/weight_layout.h"
#ifdef G4MOE_HAVE_CUDA
#include "ops/cuda/kernels.h"
#endif

namespace g4::cli {

Allocator& device_allocator(const std::string& device, const char* command) {
  if (device == "cpu") return host_allocator();
  check(device == "cuda", "--device must be cpu or cuda, got \"", device, "\"");
#ifdef G4MOE_HAVE_CUDA
  return cuda::cuda_device_allocator(command);
#else
  fail(command, " --device cuda: this g4moe was built without the CUDA backend (no nvcc was found)");
#endif
}

std::string human_count(double n) {
  char buf[32];
  if (n >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1e3)
    std::snprintf(buf, sizeof buf, "%.2fK", n / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", n);
  return buf;
}

std::string human_bytes(double n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024 && u < 4) {
    n /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", n, units[u]);
  return buf;
}

DType compute_dtype(const std::string& dtype, const std::string& device) {
  check(dtype == "auto" || dtype == "f32" || dtype == "bf16", "--dtype ", dtype,
        " is not one of auto, f32, bf16");
  if (dtype == "auto") return device == "cpu" ? DType::f32 : DType::bf16;
  check(dtype == "f32" || device != "cpu",
        "--dtype bf16 runs on the GPU only (--device cuda); the CPU computes in f32");
  return dtype == "f32" ? DType::f32 : DType::bf16;
}

void place_model(Gemma4Model& model, Allocator& device, DType dtype, const char* command,
                 double extra_bytes_per_parameter, const std::string& extra) {
  if (device.device() == Device::cpu) return;
  const double params = static_cast<double>(count_parameters(model.config.text).total);
  require_available(device, params * (static_cast<double>(dtype_size(dtype)) + extra_bytes_per_parameter),
                    command,
                    human_count(params) + " parameters in " + std::string(dtype_name(dtype)) + extra);
  move_weights(model.config, model.weights, device, dtype);
}

}  // namespace g4::cli
