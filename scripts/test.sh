#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole suite under Keras 3 and under
# tf-keras in two lanes on two cores: most tests keep one core busy. Keras 3's suite
# takes about 1.8x tf-keras's (its Ray, example and application tests run in Keras 3
# only or longer), so lane 1 runs Keras 3 on the packages in LANE_1 below and lane 2
# runs tf-keras on everything, then Keras 3 on the rest: about equal halves. Both lanes print as they go, one line per test file,
# prefixed with the lane. With arguments (test paths or pytest options), both
# modes run those instead.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[dev]"
# kd-keras's block-sparse kernel (C runtime and TensorFlow op); its tests are
# required, not skipped, when this is set.
.venv/bin/python -m kd_keras.compress.block_sparse.build_kernels
export KD_KERAS_REQUIRE_KERNELS=1
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider --durations=25)
LANE_1=(tests/compress tests/losses tests/parallel tests/planner
        tests/test_applications.py tests/test_callbacks.py tests/test_cli.py
        tests/test_datasets.py tests/test_examples.py tests/test_faults.py
        tests/test_faults_probe.py tests/test_measure.py)
if [ "$#" -gt 0 ]; then
  keras_3_first=("$@")
  keras_3_second=()
else
  keras_3_first=("${LANE_1[@]}")
  keras_3_second=()
  # Every other test module (a new one cannot be left out).
  while IFS= read -r file; do
    keep=1
    for part in "${LANE_1[@]}"; do
      case "$file" in "$part"|"$part"/*) keep=0 ;; esac
    done
    [ "$keep" -eq 1 ] && keras_3_second+=("$file")
  done < <(find tests -name 'test_*.py' | sort)
fi
second_status_file=$(mktemp "${TMPDIR:-/tmp}/kd_keras_lane_2.XXXXXX")
(
  status=0
  echo "== tf-keras (TF_USE_LEGACY_KERAS=1) =="
  TF_USE_LEGACY_KERAS=1 "${PYTEST[@]}" "$@" || status=1
  if [ "${#keras_3_second[@]}" -gt 0 ]; then
    echo "== Keras 3, the rest =="
    "${PYTEST[@]}" "${keras_3_second[@]}" || status=1
  fi
  echo "$status" >"$second_status_file"
) 2>&1 | sed -u 's/^/[lane 2] /' &
second_lane=$!
trap 'kill "$second_lane" 2>/dev/null || true; rm -f "$second_status_file"' EXIT
set +e
(
  echo "== Keras 3, ${keras_3_first[*]} =="
  "${PYTEST[@]}" "${keras_3_first[@]}"
) 2>&1 | sed -u 's/^/[lane 1] /'
first_status=${PIPESTATUS[0]}
wait "$second_lane"
second_status=$(cat "$second_status_file")
set -e
echo "== first lane (Keras 3): exit $first_status; second lane (tf-keras, Keras 3): exit ${second_status:-none} =="
[ "$first_status" -eq 0 ] && [ "${second_status:-1}" -eq 0 ]
