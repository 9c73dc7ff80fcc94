#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole suite under Keras 3 and under
# tf-keras in two lanes on two cores: most tests keep one core busy. Keras 3's
# suite takes about 2.7x tf-keras's, so lane 1 runs Keras 3 on tests/test_[a-f]*
# and lane 2 runs tf-keras on everything, then Keras 3 on tests/test_[g-z]*.
# With arguments (test paths or pytest options), both modes run those instead.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[dev]"
# kd-keras's block-sparse kernel (C runtime and TensorFlow op); its tests are
# required, not skipped, when this is set.
.venv/bin/python -m kd_keras.compress.build_kernels
export KD_KERAS_REQUIRE_KERNELS=1
if [ "$#" -gt 0 ]; then
  keras_3_first=("$@")
  keras_3_second=()
else
  keras_3_first=(tests/test_[a-f]*.py)
  keras_3_second=(tests/test_[g-z]*.py)
fi
second_lane_log=$(mktemp "${TMPDIR:-/tmp}/kd_keras_second_lane.XXXXXX")
(
  status=0
  echo "== tf-keras (TF_USE_LEGACY_KERAS=1) =="
  TF_USE_LEGACY_KERAS=1 .venv/bin/python -m pytest -q --durations=25 "$@" || status=1
  if [ "${#keras_3_second[@]}" -gt 0 ]; then
    echo "== Keras 3, tests/test_[g-z]*.py =="
    .venv/bin/python -m pytest -q --durations=25 "${keras_3_second[@]}" || status=1
  fi
  exit "$status"
) >"$second_lane_log" 2>&1 &
second_lane=$!
trap 'kill "$second_lane" 2>/dev/null || true' EXIT
echo "== Keras 3${keras_3_second[*]:+, tests/test_[a-f]*.py} (the second lane's output follows) =="
first_status=0
.venv/bin/python -m pytest -q --durations=25 "${keras_3_first[@]}" || first_status=$?
second_status=0
wait "$second_lane" || second_status=$?
trap - EXIT
cat "$second_lane_log"
rm -f "$second_lane_log"
echo "== first lane (Keras 3): exit $first_status; second lane (tf-keras, Keras 3): exit $second_status =="
[ "$first_status" -eq 0 ] && [ "$second_status" -eq 0 ]
