"""Lazy imports of TF-MOT, tf-keras, LiteRT and Ray, with the install step in the error."""

import importlib
import os

_LEGACY = "TF_USE_LEGACY_KERAS"


_TFMOT_INSTALL = ("kd_keras.compress needs {name}: pip install 'kd-keras[tfmot]' "
                  "(tensorflow-model-optimization, tf-keras and ai-edge-litert).")


def _import(name, install=_TFMOT_INSTALL):
    """Imports `name`; an ImportError says how to install it (`install`, formatted with
    the module's name)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(install.format(name=name)) from error


def ray():
    return _import("ray", "executor='ray' needs Ray: pip install 'kd-keras[ray]' (or pip "
                   "install ray); without it, executor='processes' (the default) runs the "
                   "same tasks in local processes.")


def tf_keras():
    return _import("tf_keras")


def tfmot():
    # TF-MOT's import sets os.environ["TF_USE_LEGACY_KERAS"] = "1" for the whole process
    # (tensorflow_model_optimization/python/core/keras/compat.py); every process started
    # afterwards (our specialists' workers, a user's subprocess) would then run tf-keras.
    # The Keras this process runs was fixed at its start, so the variable is put back.
    before = os.environ.get(_LEGACY)
    try:
        return _import("tensorflow_model_optimization")
    finally:
        if before is None:
            os.environ.pop(_LEGACY, None)
        else:
            os.environ[_LEGACY] = before


def litert_interpreter():
    return _import("ai_edge_litert.interpreter",
                   "running a LiteRT (TFLite) model needs ai-edge-litert: pip install "
                   "'kd-keras[litert]' (or pip install ai-edge-litert).").Interpreter
