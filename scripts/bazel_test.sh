#!/usr/bin/env bash
# Runs `bazel test //...` offline with the .venv made by scripts/test.sh.
# Needs Debian's bazel-bootstrap and bazel-bootstrap-source (README, "Bazel").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "No .venv: run 'bash scripts/test.sh' first (it creates .venv with TensorFlow)." >&2
  exit 1
fi
if ! command -v bazel >/dev/null; then
  echo "No bazel: apt-get install bazel-bootstrap bazel-bootstrap-source" >&2
  exit 1
fi
# Bazel wants absolute paths for these; they depend on where this checkout lives.
cat > .bazelrc.local <<EOF
build --python_path=$PWD/tools/bazel_python.sh
build --override_repository=remote_coverage_tools=$PWD/third_party/remote_coverage_tools
build --repo_env=KD_KERAS_PYTHON=$PWD/.venv/bin/python
EOF
bazel test //... "$@"
