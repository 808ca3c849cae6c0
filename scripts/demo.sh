#!/usr/bin/env bash
# The main job: set up, build, and inspect a checkpoint the repository ships (a tiny 26B-A4B-shaped MoE model
# in the released Hugging Face layout: nested config, model.language_model. names, two shards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build/g4moe inspect tests/fixtures/released_layout
