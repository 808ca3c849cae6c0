#!/usr/bin/env bash
# Installs every Debian 12 package that g4moe's build and tests need, and the openai Python client the server
# test drives (into venv-tests/). Idempotent: when everything is present it installs nothing and does not touch
# the network. Runs as root (or through sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git python3 python3-venv curl
  nlohmann-json3-dev libopenblas-dev libopenblas-openmp-dev libcli11-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
  libcairo2-dev libjpeg62-turbo-dev libpng-dev
  libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev
  clang-14 libclang-rt-14-dev libomp-14-dev clang-format
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The real OpenAI Python client, which tests/cli/serve_test.sh drives `g4moe serve` with (Debian 12 does not
# package it): a virtual environment in venv-tests/ (git-ignored), made once.
cd "$(dirname "$0")/.."
if ! venv-tests/bin/python -c "import openai" 2>/dev/null; then
  echo "setup: installing the openai client into venv-tests/"
  rm -rf venv-tests
  python3 -m venv venv-tests
  venv-tests/bin/pip install -q "openai==1.109.1"
fi
