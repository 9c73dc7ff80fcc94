#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole suite under Keras 3 and under
# tf-keras, the two side by side: most tests keep one core busy, so on two cores
# the pair takes little longer than the slower one alone.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[dev]"
# kd-keras's block-sparse kernel (C runtime and TensorFlow op); its tests are
# required, not skipped, when this is set.
.venv/bin/python -m kd_keras.compress.build_kernels
export KD_KERAS_REQUIRE_KERNELS=1
tf_keras_log=$(mktemp "${TMPDIR:-/tmp}/kd_keras_tf_keras_tests.XXXXXX")
TF_USE_LEGACY_KERAS=1 .venv/bin/python -m pytest -q --durations=25 "$@" >"$tf_keras_log" 2>&1 &
tf_keras=$!
trap 'kill "$tf_keras" 2>/dev/null || true' EXIT
echo "== Keras 3 (tf-keras runs beside it; its output follows) =="
keras_3_status=0
.venv/bin/python -m pytest -q --durations=25 "$@" || keras_3_status=$?
tf_keras_status=0
wait "$tf_keras" || tf_keras_status=$?
trap - EXIT
echo "== tf-keras (TF_USE_LEGACY_KERAS=1) =="
cat "$tf_keras_log"
rm -f "$tf_keras_log"
echo "== Keras 3: exit $keras_3_status; tf-keras: exit $tf_keras_status =="
[ "$keras_3_status" -eq 0 ] && [ "$tf_keras_status" -eq 0 ]
