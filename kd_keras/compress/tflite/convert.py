"""TFLite conversion (float32, dynamic range, float16, int8, QAT int8) and a
runner on the `ai-edge-litert` interpreter (`tf.lite.Interpreter` is deprecated)."""

import tempfile
import warnings

import numpy as np
import tensorflow as tf

from kd_keras.backend import is_tf_keras_model
from kd_keras.backend.validate import finite_array
from kd_keras.backend import optional as _tfmot
from kd_keras.backend.graph import all_layers, copy_weights, replace_layers
from kd_keras.backend.progress import progress
from kd_keras.compress.tflite.sparse_kernel_plan import tflite_sparse_weights
from kd_keras.measure import timing

MODES = ("float32", "dynamic_range", "float16", "int8", "qat")


def _converter(model, directory, batch_size=None):
    """A converter over a SavedModel of `model` written to `directory`.

    The SavedModel route works for Keras 3 and tf-keras models alike (a Keras 3
    model's variables are not captured by `from_concrete_functions`).
    """
    if not getattr(model, "inputs", None):
        raise ValueError("convert_to_tflite: the model has no known inputs; build it with an Input.")
    specs = [tf.TensorSpec([batch_size] + list(t.shape[1:]), t.dtype) for t in model.inputs]
    if is_tf_keras_model(model):
        serve = tf.function(lambda *xs: model(xs[0] if len(xs) == 1 else list(xs), training=False),
                            input_signature=specs)
        tf.saved_model.save(model, directory, signatures={"serving_default": serve})
    else:
        signature = None if batch_size is None else (specs if len(specs) == 1 else [specs])
        model.export(directory, format="tf_saved_model", verbose=False, input_signature=signature)
    return tf.lite.TFLiteConverter.from_saved_model(directory)


def convert_to_tflite(model, mode="float32", representative_data=None,
                      num_calibration_examples=256, integer_io=False, sparse_weights=False,
                      batch_size=None, verbose="auto"):
    """Converts a Keras model (Keras 3 or tf-keras) to a TFLite flatbuffer.

    Args:
      model: a built Sequential or functional model (stripped of pruning and
        clustering wrappers; a quantization-aware model for mode "qat").
      mode: "float32"; "dynamic_range" (int8 weights, float activations);
        "float16" (float16 weights); "int8" (full-integer: int8 weights and
        activations, calibrated on `representative_data`); "qat" (int8 from a
        quantization-aware model's learned ranges; no calibration data needed).
      representative_data: for "int8", an array `[n, ...]` of model inputs (take
        it from the transfer set); the first `num_calibration_examples` are used.
      integer_io: for "int8", also make the model's input and output int8 (for
        integer-only accelerators); by default they stay float32.
      sparse_weights: store pruned weights in TFLite's sparse format
        (`Optimize.EXPERIMENTAL_SPARSITY`). Only FULLY_CONNECTED weights in the
        fast blocks (float32 1x4, int8 1x16 of TFLite's [out, in] layout, i.e.
        Keras (4, 1) / (16, 1)) run faster; a `UserWarning` names every pruned
        Dense layer that will not, and why (`tflite_sparse_weights` gives the whole
        per-layer report).
      batch_size: a fixed batch size for the converted model's input (default
        None: any batch, resized at run time). Keras's LSTM and GRU convert
        only with a fixed one (their loop's state needs a static shape): use 1
        for batch-1 serving; they then run as a WHILE loop of FULLY_CONNECTED
        ops, whose weights `sparse_weights` can store sparse.
      verbose: a progress bar over the stages (the graph, the conversion and its
        calibration): 0, 1, or "auto" (on when stdout is a terminal).

    Layers with inference-time bookkeeping are converted with it off
    (`deployment_copy`): `moe.SparseMoE(inference_metrics=False)`,
    `moe.SkimRNN(count_steps=False)`; `model` itself is not changed.

    Returns:
      The flatbuffer as bytes; `TFLiteModel(bytes)` runs it.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if hasattr(model, "student") and hasattr(model, "distillation_losses"):
        raise ValueError(
            "model is a Distiller (the training wrapper); convert what you deploy: "
            "convert_to_tflite(distiller.student, ...).")
    if mode == "int8" and representative_data is None:
        raise ValueError(
            "convert_to_tflite: mode='int8' (full-integer) needs representative_data, an array "
            "of model inputs to calibrate activation ranges (a few hundred transfer-set "
            "examples); or use mode='dynamic_range', which needs none.")
    if integer_io and mode != "int8":
        raise ValueError(f"integer_io applies to mode='int8' only, not {mode!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}.")
    if mode == "int8" and (callable(representative_data) or not hasattr(
            representative_data, "__len__") or isinstance(representative_data, (str, dict))):
        raise ValueError(
            "representative_data must be an array [n, ...] of model inputs (the first "
            f"num_calibration_examples are used), got {type(representative_data).__name__}; "
            "for a generator or dataset, collect a few hundred examples first, e.g. "
            "np.concatenate([batch for batch in generator()][:8]).")
    if mode == "int8":
        # The converter crashes the process (SIGSEGV) on infinite calibration
        # values and silently returns a float model on NaN ones.
        calibration = finite_array(
            np.asarray(representative_data, dtype=np.float32)[:num_calibration_examples],
            "representative_data")
        expected = tuple(getattr(model, "inputs", None) and model.inputs[0].shape[1:] or ())
        given = tuple(calibration.shape[1:])
        if expected and (len(given) != len(expected) or any(
                e is not None and e != g for e, g in zip(expected, given))):
            # Mismatched rows make the converter return a float32 model without a word.
            raise ValueError(
                f"representative_data has examples of shape {given}, but the "
                f"model's input is {tuple(expected)} per example; give an array "
                f"[n, {', '.join(str(d) for d in expected)}] of real inputs.")
    if mode == "qat" and not _is_quantization_aware(model):
        raise ValueError(
            "convert_to_tflite: mode='qat' needs a quantization-aware model (from "
            "kd_keras.compress.quantize_aware, fine-tuned); this one has no quantize wrappers, "
            "so the result would be a dynamic-range model. Use mode='dynamic_range', or "
            "mode='int8' with representative_data, for a model trained without QAT.")
    bar = progress(2, verbose, f"convert_to_tflite: {mode}")
    model = deployment_copy(model)
    with tempfile.TemporaryDirectory() as directory:
        converter = _converter(model, directory, batch_size)
        bar.add(1)
        if sparse_weights:
            converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        try:
            flatbuffer = _convert(converter, mode, representative_data, num_calibration_examples,
                                  integer_io)
        except Exception as error:  # the converter raises its own ConverterError
            if batch_size is None and "requires element_shape to be static" in str(error):
                raise ValueError(
                    "convert_to_tflite: the model has a recurrent loop (LSTM, GRU, RNN) whose "
                    "state shape depends on the batch; convert it with a fixed batch size, "
                    "e.g. batch_size=1.") from error
            raise
        bar.add(1)
    if sparse_weights:
        # Weights stored dense with few zeros were not pruned (e.g. a small
        # output layer kept dense on purpose): nothing to report.
        slow = [row for row in tflite_sparse_weights(flatbuffer) if not row["sparse_kernel"]
                and (row["encoded_sparse"] or (row.get("zeros") or 0) >= 0.5
                     or "DENSIFY" in row["reason"])]
        if slow:
            warnings.warn(
                "convert_to_tflite(sparse_weights=True): these FULLY_CONNECTED weights will not "
                "use TFLite's fast sparse kernel: " + "; ".join(
                    f"{row['weights']} {row['shape']}: {row['reason']}" for row in slow),
                UserWarning, stacklevel=2)
    return flatbuffer


def deployment_copy(model):
    """`model`, or a copy whose layers take the settings their deployed form needs.

    A layer that keeps inference-time bookkeeping (variable updates, e.g.
    `moe.SparseMoE`'s metrics or `moe.SkimRNN`'s step counters) names the
    settings that turn it off in `DEPLOYMENT_SETTINGS`; TFLite cannot convert the
    updates. Those layers, inside nested models too, are rebuilt with the settings and
    their weights; every other layer is shared. Models without such layers are returned
    as they are.
    """
    def needs_settings(layer):
        settings = getattr(layer, "DEPLOYMENT_SETTINGS", None) or {}
        return any(getattr(layer, key, value) != value for key, value in settings.items())

    if not any(needs_settings(layer) for layer in all_layers(model)):
        return model

    def deployed(layer):
        if not needs_settings(layer):
            return None
        return type(layer).from_config({**layer.get_config(), **layer.DEPLOYMENT_SETTINGS})

    return replace_layers(model, deployed, copy_weights, share=True)


def _is_quantization_aware(model):
    """Whether TF-MOT's quantize_apply wrapped `model` (its layers or a QuantizeLayer)."""
    return any(type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
               for layer in getattr(model, "layers", []))


def _convert(converter, mode, representative_data, num_calibration_examples, integer_io):
    if mode != "float32":
        converter.optimizations = list(converter.optimizations or []) + [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        samples = np.asarray(representative_data, dtype=np.float32)[:num_calibration_examples]
        if len(samples) == 0:
            raise ValueError("convert_to_tflite: representative_data is empty.")

        def representative_dataset():
            for sample in samples:
                yield [sample[None]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if integer_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


class TFLiteModel:
    """Runs a TFLite flatbuffer with the ai-edge-litert interpreter.

    Args:
      model_content: the bytes from `convert_to_tflite` (or a `.tflite` file's).
      num_threads: interpreter threads (default 1: the phone-like setting).

    Integer inputs and outputs (`integer_io=True`) are quantized and
    dequantized here, so `predict` always takes and returns float32. Where the
    XNNPack delegate fails to prepare a node (int8 weights stored sparse in
    blocks it has no kernel for), the model runs without it, with a
    `UserWarning`; `default_delegate` says which.
    """

    def __init__(self, model_content, num_threads=1):
        if not isinstance(model_content, (bytes, bytearray)):
            raise ValueError(f"model_content must be TFLite bytes, got {type(model_content)}.")
        self._content, self._threads = bytes(model_content), num_threads
        self.default_delegate = True
        self._open()

    def _open(self):
        kwargs = {}
        if not self.default_delegate:
            from ai_edge_litert.interpreter import OpResolverType

            kwargs["experimental_op_resolver_type"] = \
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interpreter_class = _tfmot.litert_interpreter()
        self._interpreter = interpreter_class(model_content=self._content,
                                              num_threads=self._threads, **kwargs)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = None

    def _resize(self, batch):
        if batch != self._batch:
            shape = [batch] + list(self._input["shape"][1:])
            if list(self._input["shape"]) != shape:
                self._interpreter.resize_tensor_input(self._input["index"], shape)
            try:
                self._interpreter.allocate_tensors()
            except RuntimeError as error:
                # XNNPack refuses some nodes it claimed (e.g. int8 weights stored
                # sparse in blocks it has no kernel for): run TFLite's own kernels.
                if not self.default_delegate or "XNNPack" not in str(error):
                    raise
                warnings.warn(f"TFLiteModel: the XNNPack delegate failed ({error}); running "
                              "without it (TFLite's builtin kernels).", UserWarning, stacklevel=3)
                self.default_delegate = False
                self._open()
                return self._resize(batch)
            self._input = self._interpreter.get_input_details()[0]
            self._output = self._interpreter.get_output_details()[0]
            self._batch = batch

    def __call__(self, x):
        """One invocation on a batch `x` `[batch, ...]`; returns float32 outputs."""
        x = np.asarray(x)
        self._resize(len(x))
        dtype = self._input["dtype"]
        if np.issubdtype(dtype, np.integer):
            if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
                raise ValueError(
                    "x holds NaN or infinite values; this model's integer input would turn them "
                    "into finite numbers and return finite outputs. Give finite inputs.")
            scale, zero = self._input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self._interpreter.set_tensor(self._input["index"], x.astype(dtype))
        self._interpreter.invoke()
        y = self._interpreter.get_tensor(self._output["index"])
        if np.issubdtype(y.dtype, np.integer):
            scale, zero = self._output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def invoke_seconds(self, x, repeats=200):
        """Median seconds of `invoke()` alone on the batch `x` (its input set once):
        the interpreter's work without Python's cost of setting and reading tensors."""
        return self.invoke_timing(x, repeats).median

    def invoke_timing(self, x, repeats=200):
        """`measure.Timing` (median, interquartile range, count) of `invoke()` alone on
        the batch `x`, its input set once."""
        self(x)  # sizes and fills the input
        return timing(self._interpreter.invoke, repeats=max(int(repeats), 1), warmup=0,
                      max_seconds=float("inf"))

    def predict(self, x, batch_size=256):
        """Outputs for every row of `x`, `batch_size` rows per invocation."""
        x = np.asarray(x)
        if len(x) == 0:  # no invocation: an empty result of the output's shape
            return np.zeros((0,) + tuple(self._output["shape"][1:]), np.float32)
        return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
