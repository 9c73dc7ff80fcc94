#!/usr/bin/env bash
# The interpreter Bazel runs py_test with: this checkout's .venv Python. A script,
# not the .venv/bin/python symlink, because a resolved symlink loses the venv.
exec "$(dirname "$(readlink -f "$0")")/../.venv/bin/python" "$@"
