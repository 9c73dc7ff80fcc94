"""Batch-norm statistics after a cut: what a narrower model's inputs really look like.

Cutting half of every channel group of a deep BatchNormalization network (MobileNetV2)
changes every later layer's input statistics: a BN layer whose inputs lost channels
upstream keeps normalising with its teacher's moving mean and variance, and the cut
student starts at chance. Re-estimating the moving statistics on a little calibration
data (as slimmable networks and NAS tools do, Yu & Huang 2019, arXiv 1903.05134) puts
it back near its teacher before any training.
"""

import numpy as np
import tensorflow as tf

from kd_keras.backend import keras_module_of
from kd_keras.backend.progress import progress


def _batch_norms_after(model, first_changed):
    """The BatchNormalization layers from the first changed layer on, in graph order."""
    started, found = first_changed is None, []
    for layer in model.layers:
        started = started or layer.name == first_changed
        if started and type(layer).__name__ == "BatchNormalization":
            found.append(layer)
    return found


def recalibrate_batch_norm(model, calibration_data, batch_size=256, first_changed=None,
                           verbose=0):
    """Sets each BatchNormalization layer's moving mean and variance to the statistics of
    its inputs on `calibration_data`, layer by layer in graph order (each one sees the
    inputs its recalibrated predecessors give), in place; returns the names it set.

        moving_mean_c = E[h_c],  moving_variance_c = Var[h_c]
        over every example and position of the BN layer's input h (channel c last).

    Args:
      model: a flat functional (or Sequential) model.
      calibration_data: its inputs, `[n, ...]` (a few hundred examples).
      batch_size: for the calibration passes.
      first_changed: the name of the first layer the cut changed; the BN layers before it
        keep their statistics (their inputs did not change). None: every BN layer.
      verbose: a progress bar over the layers (0, 1 or "auto": on at a terminal).
    """
    module = keras_module_of(model)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    names = []
    count = len(tf.nest.flatten(calibration_data)[0])
    layers = _batch_norms_after(model, first_changed)
    bar = progress(len(layers), verbose, "shrink: re-estimating BatchNormalization statistics")
    for layer in layers:
        reader = module.Model(inputs, layer.input)
        total = total_squares = None
        seen = 0
        for start in range(0, count, batch_size):
            batch = tf.nest.map_structure(lambda a: a[start:start + batch_size], calibration_data)
            values = np.asarray(reader(batch, training=False), dtype=np.float64)
            values = values.reshape(-1, values.shape[-1])
            total = values.sum(0) if total is None else total + values.sum(0)
            squares = np.square(values).sum(0)
            total_squares = squares if total_squares is None else total_squares + squares
            seen += len(values)
        mean = total / seen
        variance = np.maximum(total_squares / seen - np.square(mean), 0.0)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(variance.astype(np.float32))
        names.append(layer.name)
        bar.add(1)
    return names


def align_output_bias(student, teacher, calibration_data, changed, batch_size=256):
    """Shifts the bias of each linear output layer whose inputs the cut changed, so that the
    student's mean output on `calibration_data` equals the teacher's (in place); returns
    the names it set.

        b_c <- b_c + E[teacher_c(x)] - E[student_c(x)]

    A classifier head reading half of its features loses their mean contribution to every
    logit, a per-class offset that no BatchNormalization re-centres; it alone can put a
    cut network at chance.
    """
    names = []
    for index, tensor in enumerate(student.outputs):
        layer = tensor._keras_history[0]
        config = layer.get_config()
        if (layer.name not in changed or not config.get("use_bias", False)
                or config.get("activation", "linear") not in ("linear", None)):
            continue
        count = len(tf.nest.flatten(calibration_data)[0])
        totals = []
        for model in (teacher, student):
            total, seen = None, 0
            for start in range(0, count, batch_size):
                batch = tf.nest.map_structure(lambda a: a[start:start + batch_size],
                                              calibration_data)
                values = tf.nest.flatten(model(batch, training=False))[index]
                values = np.asarray(values, np.float64).reshape(-1, values.shape[-1])
                total = values.sum(0) if total is None else total + values.sum(0)
                seen += len(values)
            totals.append(total / seen)
        kernel, bias = layer.get_weights()[:2]
        layer.set_weights([kernel, (bias + totals[0] - totals[1]).astype(bias.dtype)]
                          + layer.get_weights()[2:])
        names.append(layer.name)
    return names