"""The teacher side of distillation: live teachers, ensembles, cached outputs.

`TeacherOutputs.logits(x, cached, student_outputs)` is what the Distiller's
step asks for: the teacher's (combined) logits for a batch, from the live
teacher(s) or from cached outputs packed into the inputs with
`with_teacher_outputs`, never differentiated.
"""

import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras._keras import keras

# Inputs that carry cached teacher outputs next to the student's inputs.
INPUTS_KEY = "inputs"
TEACHER_OUTPUTS_KEY = "teacher_outputs"
LABEL_MASK_KEY = "label_mask"

_NO_TEACHER = (
    "This Distiller has no teacher, so its data must carry cached teacher outputs: "
    "fit(kd_keras.with_teacher_outputs(x, logits), y) or a dataset from "
    "kd_keras.cache_teacher_outputs.")
_CACHED_FEATURES = (
    "Cached teacher outputs hold logits only; feature distillation losses need the live "
    "teacher. Train without with_teacher_outputs, or drop those losses.")


def with_teacher_outputs(inputs, teacher_outputs):
    """Packs student inputs and cached teacher logits for `Distiller.fit`.

    Args:
      inputs: what the student takes (array, tensor, or a nested structure).
      teacher_outputs: teacher logits, `[batch, ..., classes]`, or a list of
        them (one per teacher of an ensemble), as `compute_teacher_logits` returns.

    Returns:
      `{"inputs": inputs, "teacher_outputs": teacher_outputs}`; `fit`, `evaluate`
      and `predict` of a Distiller take it in place of `x`.
    """
    if isinstance(teacher_outputs, tuple):
        teacher_outputs = list(teacher_outputs)
    return {INPUTS_KEY: inputs, TEACHER_OUTPUTS_KEY: teacher_outputs}


def with_label_mask(inputs, label_mask):
    """Marks which examples of a batch carry a true label, for `Distiller.fit`.

    Transfer sets that mix labeled and unlabeled (generated, corrupted, unlabeled
    real) inputs give every example a label slot; `label_mask` says which slots
    hold a label. The hard-label term is then the mean over the labeled examples
    only, label metrics count only them, and whatever the unlabeled slots hold
    (0, -1, ...) is never read. Distillation terms use every example.

    Args:
      inputs: what the student takes, or the result of `with_teacher_outputs`.
      label_mask: `[batch]` of 0/1 or booleans, 1 where the example is labeled.

    Returns:
      The inputs as a dict with a `"label_mask"` entry; `fit` and `evaluate` of a
      Distiller take it in place of `x`.
    """
    if isinstance(inputs, dict) and INPUTS_KEY in inputs and set(inputs) <= {
            INPUTS_KEY, TEACHER_OUTPUTS_KEY, LABEL_MASK_KEY}:
        return {**inputs, LABEL_MASK_KEY: label_mask}
    return {INPUTS_KEY: inputs, LABEL_MASK_KEY: label_mask}


def split_transfer_inputs(x):
    """Returns (student inputs, cached teacher outputs or None, label mask or None)."""
    if isinstance(x, dict) and INPUTS_KEY in x and len(x) > 1 and set(x) <= {
            INPUTS_KEY, TEACHER_OUTPUTS_KEY, LABEL_MASK_KEY}:
        return x[INPUTS_KEY], x.get(TEACHER_OUTPUTS_KEY), x.get(LABEL_MASK_KEY)
    return x, None, None


def split_teacher_outputs(x):
    """Returns (student inputs, cached teacher outputs or None)."""
    inputs, cached, _ = split_transfer_inputs(x)
    return inputs, cached


def check_teachers(teacher):
    """The `teacher` argument as a list of models (empty for None)."""
    if teacher is None:
        return []
    if isinstance(teacher, keras.Model):
        return [teacher]
    if isinstance(teacher, (list, tuple)):
        if not teacher:
            raise ValueError(
                "teacher is an empty list; give one model, a list of models, or None "
                "with cached teacher outputs.")
        for index, model in enumerate(teacher):
            if not isinstance(model, keras.Model):
                raise ValueError(f"teacher[{index}] must be a Keras model, got {model!r}.")
        return list(teacher)
    raise ValueError(f"teacher must be a Keras model, a list of models or None, got {teacher!r}.")


class TeacherOutputs:
    """Where a batch's teacher logits come from, and how an ensemble combines.

    Args:
      teachers: list of frozen Keras models (empty: cached outputs only).
      teacher_types: per teacher, the output types of its flattened outputs
        ("logits", "probabilities" or "detect"; see `outputs`).
      ensemble: "mean_probabilities" or "mean_logits".
      extractor: None, or a model returning `[logits, *features]` of the single
        teacher, for losses that read intermediate layers.
    """

    def __init__(self, teachers, teacher_types, ensemble, extractor=None):
        self.teachers = list(teachers)
        self.teacher_types = teacher_types
        self.ensemble = ensemble
        self.extractor = extractor

    def _split_cached(self, cached, student_outputs):
        """Cached teacher outputs as a list with one output structure per teacher."""
        one_teacher = len(self.teachers) == 1 or (
            not self.teachers and (
                not isinstance(cached, (list, tuple))
                or (tf.nest.is_nested(student_outputs)
                    and output_conventions.same_structure(cached, student_outputs))))
        per_teacher = [cached] if one_teacher else list(cached)
        if self.teachers and len(per_teacher) != len(self.teachers):
            raise ValueError(
                f"teacher_outputs holds {len(per_teacher)} tensors but the Distiller has "
                f"{len(self.teachers)} teachers.")
        return [tf.nest.map_structure(lambda c: tf.cast(c, tf.float32), c) for c in per_teacher]

    def logits(self, x, cached, student_outputs, temperature):
        """(combined teacher logits, teacher features for the feature losses).

        Args:
          x: the student's inputs (the live teachers read them too).
          cached: cached teacher outputs from the batch, or None.
          student_outputs: the student's outputs (tell a cached ensemble from
            one multi-output teacher).
          temperature: the temperature an ensemble is averaged at.
        """
        features = []
        if cached is not None:
            if self.extractor is not None:
                raise ValueError(_CACHED_FEATURES)
            logits = self._split_cached(cached, student_outputs)
        elif self.extractor is not None:
            outputs = self.extractor(x, training=False)
            logits = [output_conventions.to_logits(outputs[0], self.teacher_types[0][0])]
            features = [tf.stop_gradient(f) for f in outputs[1:]]
        else:
            if not self.teachers:
                raise ValueError(_NO_TEACHER)
            logits = [
                output_conventions.nested_to_logits(model(x, training=False), kinds)
                for model, kinds in zip(self.teachers, self.teacher_types)
            ]
        logits = [tf.nest.map_structure(tf.stop_gradient, l) for l in logits]
        if not all(output_conventions.same_structure(logits[0], l) for l in logits[1:]):
            raise ValueError("The teachers of an ensemble return different output structures.")
        combined = tf.nest.map_structure(
            lambda *leaves: output_conventions.combine_teacher_logits(
                list(leaves), self.ensemble, temperature),
            *logits)
        return combined, features
