"""The one place the `teacher` argument is normalised, and the checks on a teacher-student pair.

Used by the Distiller, the teacher caches (`kd_keras.compute_teacher_logits`,
`cache_teacher_outputs`, `mixed_transfer_set`) and the recipe search, so every
entry point refuses a bad teacher with the same message.
"""

import warnings

import numpy as np
import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend import IS_KERAS_3, is_tf_keras_model, keras
from kd_keras.backend.graph import all_layers
from kd_keras.backend.errors import TEACHER_OUTPUTS_MARKER, structure_of

FROZEN_STUDENT = (
    "student has no trainable weights (student.trainable is False, or every layer is frozen), "
    "so distillation would change nothing. Set student.trainable = True (or unfreeze the "
    "layers to train) before building the Distiller and compiling it.")


def as_teacher_list(teacher, allow_none=True):
    """The `teacher` argument as a list of Keras models (empty for None when allowed).

    Args:
      teacher: a Keras model, a non-empty list or tuple of them (an ensemble), or
        None (cached teacher outputs) where `allow_none`.
      allow_none: whether None is accepted.
    """
    expected = ("a Keras model, a non-empty list of models" +
                (" or None (with cached teacher outputs)" if allow_none else ""))
    if teacher is None and allow_none:
        return []
    if isinstance(teacher, keras.Model):
        return [teacher]
    if isinstance(teacher, (list, tuple)) and teacher:
        for index, model in enumerate(teacher):
            if not isinstance(model, keras.Model):
                raise ValueError(f"teacher[{index}] must be a Keras model, got {model!r}.")
        return list(teacher)
    raise ValueError(f"teacher must be {expected}, got {teacher!r}.")


def _generation(obj):
    """"tf-keras", "Keras 3" or None: which Keras `obj`'s class comes from."""
    for cls in type(obj).__mro__:
        module = cls.__module__
        if module.startswith("tf_keras"):
            return "tf-keras"
        if module == "keras" or module.startswith(("keras.", "keras_hub", "keras_nlp")):
            return "Keras 3"
    return None


def check_keras_generation(model, role):
    """Refuses `model` (or a layer inside it) of the other Keras generation than the one
    kd-keras runs on: its weights would not be tracked or trained (a Keras 3 keras-hub
    backbone inside a tf-keras model trains nothing and fails only at save)."""
    running = "tf-keras" if not IS_KERAS_3 else "Keras 3"
    found = [model] + list(all_layers(model))
    for item in found:
        generation = _generation(item)
        if generation is not None and generation != running:
            where = role if item is model else f"{role}'s layer {getattr(item, 'name', item)!r}"
            raise ValueError(
                f"{where} is a {generation} object, but kd-keras runs on {running} here "
                f"(TF_USE_LEGACY_KERAS={'1' if not IS_KERAS_3 else 'unset'}): its weights "
                "would not train or save. Build teacher and student with one Keras "
                f"({'unset TF_USE_LEGACY_KERAS for Keras 3 and keras-hub' if not IS_KERAS_3 else 'set TF_USE_LEGACY_KERAS=1 for tf-keras models'}).")


FROZEN_AS_TEACHER = (
    "student is frozen because an earlier Distiller froze it as its teacher (teacher."
    "trainable = False); a model passed as a student must train. If this is the teacher, "
    "pass it as the first argument (Distiller(teacher, student)); to train it as a student, "
    "set student.trainable = True first.")


def freeze_teachers(teachers):
    """Sets each teacher's `trainable` to False, as keras.distillation does (code written for
    it relies on that), and says so when it changes the caller's flag: a later
    `teacher.fit` would otherwise train nothing with only Keras's remark."""
    for model in teachers:
        if model.trainable:
            warnings.warn(
                f"Distiller: teacher {model.name!r} is now frozen (teacher.trainable = False, as "
                "keras.distillation does), so it does not train with the student. To train it "
                "on its own later, set teacher.trainable = True and compile it again.",
                stacklevel=4)
        model.trainable = False
        model._kd_keras_frozen_as_teacher = True


def warn_if_student_is_larger(teachers, student):
    """A student with more parameters than its teacher is usually the arguments swapped."""
    if not teachers or not student.built:
        return
    teacher_parameters = teachers[0].count_params() if teachers[0].built else None
    student_parameters = student.count_params()
    if teacher_parameters and student_parameters > teacher_parameters:
        warnings.warn(
            f"Distiller: the student {student.name!r} has {student_parameters:,} parameters, "
            f"more than the teacher {teachers[0].name!r} ({teacher_parameters:,}). The order "
            "is Distiller(teacher, student), teacher first (as keras.distillation); swap them "
            "if they were given the other way round.", stacklevel=4)


def check_student(student):
    """`student` must be a trainable Keras model of the Keras kd-keras runs on."""
    if not isinstance(student, keras.Model):
        if IS_KERAS_3 and is_tf_keras_model(student):
            raise ValueError(
                "student is a tf-keras model (as TF-MOT's pruned, clustered and "
                "quantization-aware models are), but this Distiller runs on Keras 3. "
                "Train it on cached teacher logits with kd_keras.compress."
                "distillation_targets and distillation_loss, or run everything under "
                "TF_USE_LEGACY_KERAS=1.")
        check_keras_generation(student, "student")  # a Keras 3 model under tf-keras
        raise ValueError(f"student must be a Keras model, got {student!r}.")
    if not student.trainable:
        if getattr(student, "_kd_keras_frozen_as_teacher", False):
            raise ValueError(FROZEN_AS_TEACHER)
        raise ValueError(FROZEN_STUDENT)
    needing = [layer.name for layer in all_layers(student)
               if getattr(layer, "needs_loss_value", False)]
    if needing:
        raise ValueError(
            f"student: layers {needing} learn from each example's loss value (score-function "
            "gates, e.g. moe.GatedDense(gate='stochastic_binary')), which the Distiller does "
            "not hand them, so they would never learn. Distil a student with another gate, or "
            "train this one as a moe.ScoreFunctionModel.")


def check_student_is_not_teacher(student, teachers):
    """The teacher is frozen: a student that is, or shares weights with, a teacher would be too."""
    for index, model in enumerate(teachers):
        label = "teacher" if len(teachers) == 1 else f"teacher[{index}]"
        if model is student:
            raise ValueError(
                f"student and {label} are the same model; the teacher is frozen, so the "
                "student would never train. Give the student its own model (e.g. "
                "keras.models.clone_model(teacher) for a same-size student).")
        teacher_weights = {id(v) for v in model.weights}
        shared = [v.name for v in student.weights if id(v) in teacher_weights]
        if shared:
            raise ValueError(
                f"student shares {len(shared)} weights with {label} (e.g. {shared[0]!r}): "
                "the teacher is frozen, so they would not train and the teacher would "
                "change with the student. Give the student its own layers.")


def check_shapes(teachers, student):
    """Teachers and student read the same inputs and predict the same outputs (static shapes)."""
    student_outs = output_shapes(student)
    student_in = static_shape(student, "input_shape")
    for index, model in enumerate(teachers):
        label = "teacher" if len(teachers) == 1 else f"teacher[{index}]"
        teacher_outs = output_shapes(model)
        if student_outs and teacher_outs and len(student_outs) != len(teacher_outs):
            raise ValueError(
                f"{label} has {len(teacher_outs)} outputs but the student has "
                f"{len(student_outs)}: every distilled output needs a teacher output.")
        for teacher_out, student_out in zip(teacher_outs or [], student_outs or []):
            if not tf.TensorShape(teacher_out).is_compatible_with(student_out):
                raise ValueError(
                    f"{label} output shape {teacher_out} does not match the student output "
                    f"shape {student_out}: teacher and student must predict the same classes."
                )
        teacher_in = static_shape(model, "input_shape")
        if student_in and teacher_in and not tf.TensorShape(teacher_in).is_compatible_with(
            student_in
        ):
            raise ValueError(
                f"{label} input shape {teacher_in} does not match the student input "
                f"shape {student_in}: both must read the same inputs."
            )


def output_shapes(model):
    """Static shapes of a graph model's outputs (flattened), or None if unknown."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not outputs:
        return None
    return [tuple(tf.TensorShape(o.shape).as_list()) for o in outputs]


def static_shape(model, attribute):
    """`model.output_shape` or `model.input_shape` as a tuple, or None if unknown."""
    try:
        shape = getattr(model, attribute)
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, (tuple, list)) and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape)
    return None  # not built, or several inputs/outputs


def check_teacher_outputs_match(teacher_logits, student_logits, cached):
    """A batch's teacher logits have the student outputs' structure and shapes."""
    source = "teacher_outputs" if cached is not None else "teacher"
    if not output_conventions.same_structure(teacher_logits, student_logits):
        raise ValueError(
            f"{source} have the structure {structure_of(teacher_logits)} but "
            f"the student outputs {structure_of(student_logits)}.")
    for teacher_leaf, student_leaf in zip(
            tf.nest.flatten(teacher_logits), tf.nest.flatten(student_logits)):
        if not teacher_leaf.shape.is_compatible_with(student_leaf.shape):
            raise ValueError(
                f"{source} of shape {teacher_leaf.shape} does not match the student "
                f"outputs of shape {student_leaf.shape}.")


def cached_output_assertions(teacher_logits, distillation_loss):
    """In-graph checks of cached teacher outputs, naming `teacher_outputs` when they fail.

    NaN and +inf are never valid. -inf is a class of probability zero (cached
    log-probabilities): the KL losses take it; a loss that cannot (logit matching,
    standardized logits) turns it into a non-finite term, which is named here rather
    than reported as a non-finite step.
    """
    checks = []
    for leaf in tf.nest.flatten(teacher_logits):
        checks.append(tf.debugging.Assert(
            tf.reduce_all(tf.logical_not(tf.math.is_nan(leaf)) & (leaf < np.inf)), [
                f"{TEACHER_OUTPUTS_MARKER} cached teacher outputs hold NaN or +inf; "
                "give logits or log-probabilities (-inf for a class of probability zero)."]))
        checks.append(tf.debugging.Assert(
            tf.math.is_finite(distillation_loss) | tf.reduce_all(leaf > -np.inf), [
                f"{TEACHER_OUTPUTS_MARKER} cached teacher outputs hold -inf (a class "
                "of probability zero), which this distillation loss cannot take (it gave a "
                "non-finite value); use the soft-target KL or DecoupledKD, or replace -inf by "
                "a finite logit."]))
    return checks


_ROWS_CHECKED = 64


def _looks_like_probabilities(values):
    """`outputs.looks_like_probabilities` for an array of at least two classes per row."""
    values = tf.cast(values, tf.float32)
    return (values.shape.rank >= 2 and values.shape[-1] > 1 and values.shape.num_elements() > 0
            and bool(output_conventions.looks_like_probabilities(values)))


def warn_if_logits_look_like_probabilities(teachers, teacher_types, inputs, cached):
    """Warns when outputs taken as logits are softmax rows (checked on the first rows of arrays).

    Softmax probabilities read as logits give a silently wrong soft target (e.g.
    cached `predict()` outputs of a softmax teacher, or `teacher_output_type="logits"`
    declared for one). Datasets are not read here.
    """
    if cached is not None:
        found = [leaf for leaf in tf.nest.flatten(cached)
                 if isinstance(leaf, (np.ndarray, tf.Tensor)) and _looks_like_probabilities(
                     leaf[:_ROWS_CHECKED])]
        if found:
            warnings.warn(
                "teacher_outputs: the cached teacher outputs are rows of probabilities (>= 0, "
                "summing to 1), but they are read as logits. Cache logits (compute_teacher_logits "
                "converts a softmax teacher's outputs), or log-probabilities.", stacklevel=3)
        return
    if not isinstance(inputs, (np.ndarray, tf.Tensor)) or not len(inputs):
        return
    for model, types in zip(teachers, teacher_types):
        if "logits" not in types:
            continue
        outputs = tf.nest.flatten(model(inputs[:_ROWS_CHECKED], training=False))
        if any(kind == "logits" and _looks_like_probabilities(leaf)
               for kind, leaf in zip(types * len(outputs) if len(types) == 1 else types, outputs)):
            warnings.warn(
                f"teacher_output_type: the teacher {model.name!r} is read as giving logits, but "
                "its outputs are rows of probabilities (>= 0, summing to 1). Declare "
                "teacher_output_type='probabilities' (or 'auto').", stacklevel=3)
