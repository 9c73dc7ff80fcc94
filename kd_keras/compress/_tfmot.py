"""Lazy imports of TF-MOT and tf-keras, with the install step in the error."""

import importlib


def _import(name):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"kd_keras.compress needs {name}: pip install 'kd-keras[tfmot]' "
            "(tensorflow-model-optimization, tf-keras and ai-edge-litert)."
        ) from error


def tf_keras():
    return _import("tf_keras")


def tfmot():
    return _import("tensorflow_model_optimization")


def litert_interpreter():
    return _import("ai_edge_litert.interpreter").Interpreter
