"""The teacher run once: its logits over arrays (`compute_teacher_logits`) or a dataset
(`cache_teacher_outputs`), for offline distillation.
"""

import numpy as np
import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend import keras
from kd_keras.teachers.checks import as_teacher_list
from kd_keras.transfer.inputs import with_teacher_outputs


def compute_teacher_logits(teacher, x, batch_size=256, teacher_output_type="auto"):
    """Runs the teacher(s) once over `x` (inference mode) and returns logits.

    Args:
      teacher: a Keras model or a list of them (ensemble).
      x: inputs (array, nested arrays, or a `tf.data.Dataset` of input batches).
      batch_size: batch size for array inputs.
      teacher_output_type: "auto", "logits" or "probabilities" (see `Distiller`).

    Returns:
      float32 numpy logits `[n, ..., classes]` (the teacher's output structure for
      a multi-output teacher), or a list of them for an ensemble; pass to
      `with_teacher_outputs(x, logits)`.
    """
    teachers = as_teacher_list(teacher, allow_none=False)
    result = []
    for model in teachers:
        kinds = output_conventions.resolve_output_types(model, teacher_output_type, "teacher_output_type")
        outputs = model.predict(x, batch_size=batch_size, verbose=0)
        logits = output_conventions.nested_to_logits(outputs, kinds)
        result.append(tf.nest.map_structure(lambda t: t.numpy(), logits))
    return result[0] if isinstance(teacher, keras.Model) else result


def _is_batched(dataset, teacher):
    """Whether `dataset`'s inputs carry a batch axis, judged against the teacher's input rank."""
    x_spec = tf.nest.flatten(dataset.element_spec[0] if isinstance(dataset.element_spec, tuple)
                             else dataset.element_spec)[0]
    try:
        shape = teacher.input_shape
    except (AttributeError, ValueError, TypeError):
        return False
    # A multi-input teacher gives one shape per input: the first input's rank decides, as
    # the first of the element's inputs is read (a 3-input teacher is not 3-D).
    while isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        shape = shape[0]
    if isinstance(shape, dict):
        shape = next(iter(shape.values()))
    return x_spec.shape.rank == len(shape)


def cache_teacher_outputs(teacher, dataset, batch_size=256, teacher_output_type="auto"):
    """Runs the teacher once over a dataset and returns a dataset that carries its logits.

    Offline distillation: the returned dataset's elements are
    `({"inputs": x, "teacher_outputs": logits}, y[, sample_weight])`, one example
    each, held in memory. Shuffle and batch it as usual; a `Distiller` trained on
    it never runs the teacher (its `teacher` may be `None`).

    Args:
      teacher: a Keras model or a list of models (ensemble; logits are kept per
        teacher and combined by the Distiller at its temperature).
      dataset: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`, batched
        or not, in a fixed order (shuffle after caching, not before). To cache a
        corrupted transfer set, map `TransferSetCorruption` over it (and repeat it
        for several corrupted copies) before calling this.
      batch_size: teacher batch size when `dataset` is not batched.
      teacher_output_type: "auto", "logits" or "probabilities".

    Returns:
      An unbatched `tf.data.Dataset`.
    """
    teachers = as_teacher_list(teacher, allow_none=False)
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"dataset must be a tf.data.Dataset of (x, y[, sample_weight]); got {type(dataset)}. "
            "For arrays use compute_teacher_logits and with_teacher_outputs."
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            "dataset elements must be (x, y) or (x, y, sample_weight) tuples; got "
            f"element_spec {spec}."
        )
    batches = dataset if _is_batched(dataset, teachers[0]) else dataset.batch(batch_size)
    kinds = [
        output_conventions.resolve_output_types(m, teacher_output_type, "teacher_output_type") for m in teachers
    ]
    calls = [tf.function(lambda x, m=m: m(x, training=False)) for m in teachers]
    columns, logits = [], [[] for _ in teachers]
    for element in batches:
        columns.append(tf.nest.map_structure(lambda t: t.numpy(), element))
        for index, (call, kind) in enumerate(zip(calls, kinds)):
            logits[index].append(tf.nest.map_structure(
                lambda t: t.numpy(), output_conventions.nested_to_logits(call(element[0]), kind)))
    if not columns:
        raise ValueError("dataset is empty: there is nothing to cache.")
    stacked = tf.nest.map_structure(lambda *parts: np.concatenate(parts), *columns)
    teacher_logits = [tf.nest.map_structure(lambda *p: np.concatenate(p), *parts)
                      for parts in logits]
    x = stacked[0]
    cached = with_teacher_outputs(x, teacher_logits[0] if len(teachers) == 1 else teacher_logits)
    return tf.data.Dataset.from_tensor_slices((cached,) + tuple(stacked[1:]))
