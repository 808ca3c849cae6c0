#!/usr/bin/env bash
# Builds what runs on the GPU machine (g4moe, g4_cuda_tests, g4_bench_moe, g4_bench_flash; g4_nccl_tests and g4_bench_ep when
# NCCL is found and G4_BUNDLE_NCCL=1: the run tool carries 64 MiB with the tree, which they would push over) without MPI, and gathers them with the shared libraries that machine lacks (OpenBLAS, libgomp,
# yaml-cpp, Fortran runtime) into .devbin/. libnccl is not copied (218 MB): that machine has its own in the default path.
# There: LD_LIBRARY_PATH=$PWD/.devbin/lib .devbin/g4_cuda_tests   (carry .devbin with the run tool).
# The run tool carries at most 64 MiB with the tree: G4_BUNDLE_XZ=1 packs lib/ into lib.tar.xz (unpack it there
# with `tar xJf .devbin/lib.tar.xz -C .devbin`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >/dev/null
targets=(g4moe g4_cuda_tests g4_bench_moe g4_bench_flash)
[ "${G4_BUNDLE_NCCL:-0}" = 1 ] && grep -q "^G4_NCCL_LIBRARY:FILEPATH=/" build-gpu/CMakeCache.txt &&
  targets+=(g4_nccl_tests g4_bench_ep)
cmake --build build-gpu --parallel "$(nproc)" --target "${targets[@]}"
rm -rf .devbin && mkdir -p .devbin/lib
for t in "${targets[@]}"; do cp "build-gpu/$t" .devbin/; done
for lib in $(ldd build-gpu/g4moe build-gpu/g4_cuda_tests | awk '/=>/ {print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libopenblas* | libgomp* | libgfortran* | libquadmath* | libyaml-cpp* | libjpeg*) cp -L "$lib" .devbin/lib/ ;;
    # cpp-httplib (`g4moe serve`) and its compression libraries, which the GPU machine lacks
    libcpp-httplib* | libbrotli*) cp -L "$lib" .devbin/lib/ ;;
    # cairo (loss.png) and what it loads, which the GPU machine may lack
    libcairo* | libpixman* | libfontconfig* | libfreetype* | libpng16* | libxcb* | libX* | libexpat* | \
      libbrotli* | libbsd* | libmd.*) cp -L "$lib" .devbin/lib/ ;;
  esac
done
# G4_BUNDLE_MPI=1: also an MPI build of g4_nccl_tests and g4_bench_ep in .devbin/mpi/ (OpenMPI's libmpi.so.40; the
# GPU machine has OpenMPI 4.1 and mpirun), for `mpirun --allow-run-as-root -np N .devbin/mpi/g4_nccl_tests`.
if [ "${G4_BUNDLE_MPI:-0}" = 1 ]; then
  cmake -S . -B build-gpu-mpi -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-gpu-mpi --parallel "$(nproc)" --target g4_nccl_tests g4_bench_ep
  mkdir -p .devbin/mpi && cp build-gpu-mpi/g4_nccl_tests build-gpu-mpi/g4_bench_ep .devbin/mpi/
fi
if [ "${G4_BUNDLE_XZ:-0}" = 1 ]; then
  tar cJf .devbin/lib.tar.xz -C .devbin lib && rm -rf .devbin/lib
fi
du -sh .devbin
