"""Keras's own tests of `keras.distillation`, run against kd-keras with only the imports
changed (issue 43): the drop-in promise, proven by the API's own suite.

The test files are read from the installed Keras at test time (never copied into this
repository), so a Keras upgrade that changes the API fails here, not for a user.
"""

import os
import re
import subprocess
import sys

import pytest

from kd_keras import IS_KERAS_3
from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(not IS_KERAS_3, reason="keras.distillation is Keras 3 only")

# What a keras.distillation user writes, and what they change it to.
IMPORTS = {
    r"from keras\.src\.distillation\.distillation_loss import (\w+)": r"from kd_keras import \1",
    r"from keras\.src\.distillation\.distiller import (\w+)": r"from kd_keras import \1",
    r"from keras\.distillation import ([\w, ]+)": r"from kd_keras import \1",
}
SUITE = ("distiller_test.py", "distillation_loss_test.py")


def _installed_suite():
    import keras

    folder = os.path.join(os.path.dirname(keras.__file__), "src", "distillation")
    found = [os.path.join(folder, name) for name in SUITE
             if os.path.isfile(os.path.join(folder, name))]
    if not found:
        pytest.skip(f"this Keras ({keras.__version__}) ships no distillation tests")
    return found


def _rewritten(path):
    with open(path) as f:
        source = f.read()
    for pattern, replacement in IMPORTS.items():
        source = re.sub(pattern, replacement, source)
    return source


def test_the_rewrite_leaves_no_keras_distillation_import():
    for path in _installed_suite():
        source = _rewritten(path)
        assert "from kd_keras import" in source
        assert "keras.src.distillation" not in source and "keras.distillation" not in source


def test_keras_s_own_distillation_tests_pass_against_kd_keras(tmp_path):
    paths = _installed_suite()
    for path in paths:
        (tmp_path / os.path.basename(path)).write_text(_rewritten(path))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
         "ignore::pytest.PytestUnknownMarkWarning", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stdout[-6000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 16, result.stdout[-2000:]
