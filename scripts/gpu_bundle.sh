#!/usr/bin/env bash
# Builds what runs on the GPU machine (g4moe, g4_cuda_tests, g4_bench_moe) without MPI, and gathers them with
# the shared libraries that machine lacks (OpenBLAS, libgomp, yaml-cpp, Fortran runtime) into .devbin/.
# There: LD_LIBRARY_PATH=$PWD/.devbin/lib .devbin/g4_cuda_tests   (carry .devbin with the run tool).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >/dev/null
cmake --build build-gpu --parallel "$(nproc)" --target g4moe g4_cuda_tests g4_bench_moe
rm -rf .devbin && mkdir -p .devbin/lib
cp build-gpu/g4moe build-gpu/g4_cuda_tests build-gpu/g4_bench_moe .devbin/
for lib in $(ldd build-gpu/g4moe build-gpu/g4_cuda_tests | awk '/=>/ {print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libopenblas* | libgomp* | libgfortran* | libquadmath* | libyaml-cpp*) cp -L "$lib" .devbin/lib/ ;;
  esac
done
du -sh .devbin
