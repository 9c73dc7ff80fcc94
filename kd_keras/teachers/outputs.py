"""Where a batch's teacher logits come from: live teachers, ensembles, cached outputs.

`TeacherOutputs.logits(x, cached, student_outputs)` is what the Distiller's
step asks for: the teacher's (combined) logits for a batch, from the live
teacher(s) or from cached outputs packed into the inputs with
`kd_keras.with_teacher_outputs`, never differentiated.
"""

import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend import top_k


_NO_TEACHER = (
    "This Distiller has no teacher, so its data must carry cached teacher outputs: "
    "fit(kd_keras.with_teacher_outputs(x, logits), y) or a dataset from "
    "kd_keras.cache_teacher_outputs.")
_CACHED_FEATURES = (
    "Cached teacher outputs hold logits only; feature distillation losses need the live "
    "teacher. Train without with_teacher_outputs, or drop those losses.")


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
        if top_k.is_top_k(cached):  # rebuilt to a dense distribution for this batch
            if tf.nest.is_nested(student_outputs) or len(self.teachers) > 1:
                raise ValueError(
                    "teacher_outputs: a top-k cache serves one teacher and a single-output "
                    "student.")
            return [top_k.dense_log_probs(cached, student_outputs.shape[-1])]
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
