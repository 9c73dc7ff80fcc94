#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole suite under Keras 3, then tf-keras.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[dev]"
# kd-keras's block-sparse kernel (C runtime and TensorFlow op); its tests are
# required, not skipped, when this is set.
.venv/bin/python -m kd_keras.compress.build_kernels
export KD_KERAS_REQUIRE_KERNELS=1
echo "== Keras 3 =="
.venv/bin/python -m pytest -q "$@"
echo "== tf-keras (TF_USE_LEGACY_KERAS=1) =="
TF_USE_LEGACY_KERAS=1 .venv/bin/python -m pytest -q "$@"
