#!/usr/bin/env bash
# Runs every test: set-up, a formatting check, a release build with the unit, fixture and CLI tests, the
# numerics tests again under each OpenBLAS kernel family the CPU runs, then the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer, then a short libFuzzer run of every parser
# of outside input (scripts/fuzz.sh; FUZZ_SECONDS per target, default 20 here). CUDA tests skip (counted as skipped) without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)

echo "== formatting (.clang-format, every tracked C++/CUDA file)"
if git rev-parse --git-dir >/dev/null 2>&1; then
  git ls-files '*.cpp' '*.h' '*.cu' | xargs clang-format --dry-run --Werror
else
  echo "not a git checkout: formatting check skipped"
fi

echo "== layering (scripts/check_layers.py: no include points up the layer order of docs/design.md)"
python3 scripts/check_layers.py

echo "== release build and tests"
bash scripts/build.sh
ctest --test-dir build --output-on-failure --parallel "$jobs"

# The fp32 results depend on the kernels OpenBLAS picks for the CPU (AMD EPYC gets Zen or SkylakeX, Intel
# Haswell or SkylakeX), so the tests whose bounds are about arithmetic run again under every kernel family
# this CPU can execute: the float64 fixtures, the MoE block and AdamW parity, and the MPI score layouts
# (mpi_test.sh's numerics scope).
echo "== CPU numerics under each OpenBLAS kernel family (OPENBLAS_CORETYPE)"
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { for f in "$@"; do grep -qw "$f" <<<"$flags" || return 1; done; }
for core in Haswell Zen SkylakeX; do
  case $core in
    SkylakeX) needs=(avx512f avx512bw avx512vl avx512dq) ;;
    *) needs=(avx2 fma) ;;
  esac
  if ! has "${needs[@]}"; then
    echo "skipped: OPENBLAS_CORETYPE=$core (this CPU lacks ${needs[*]})"
    continue
  fi
  echo "-- OPENBLAS_CORETYPE=$core"
  OPENBLAS_CORETYPE=$core G4_MPI_TEST_SCOPE=numerics ctest --test-dir build --output-on-failure --parallel "$jobs" \
    -R '^(ForwardFixture|BackwardFixture|Cases|MoeBlockFixture|AdamWParity|GroupedExperts|Gemma4Moe|mpi_parallel)'
done

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DG4MOE_SANITIZE=ON -DG4MOE_CUDA=OFF >/dev/null
cmake --build build-asan --parallel "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure --parallel "$jobs"

echo "== libFuzzer on the parsers of outside input"
FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh
