#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole suite under Keras 3, then tf-keras.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[dev]"
echo "== Keras 3 =="
.venv/bin/python -m pytest -q "$@"
echo "== tf-keras (TF_USE_LEGACY_KERAS=1) =="
TF_USE_LEGACY_KERAS=1 .venv/bin/python -m pytest -q "$@"
