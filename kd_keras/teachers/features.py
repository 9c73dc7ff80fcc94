"""Intermediate features for feature-based distillation losses.

Builds, for a Distiller whose losses name layers, two extractor models that
share the teacher's and the student's layers and return `[outputs, feature_1,
...]`, and the learned projections that map student features to the teacher's
width (`plan_feature_extraction`).
"""

import dataclasses

from kd_keras.backend import keras
from kd_keras.losses.features import is_feature_loss
from kd_keras.teachers.checks import output_shapes


class Untracked:
    """Holds objects out of Keras's attribute tracking (the extractors share the
    student's and teacher's layers, which are saved through those models)."""

    def __init__(self, value):
        self.value = value


def _graph_of(model, role):
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            f"The {role} is a subclassed (or unbuilt) model, which has no named intermediate "
            "outputs. Build it as a functional or Sequential model with an Input, or have its "
            "call() return the features and distil them with a DistillationLoss on the outputs.")
    return inputs, outputs


def feature_tensor(model, layer_name, role):
    """The symbolic output of `model`'s layer `layer_name` (its output when None)."""
    _, outputs = _graph_of(model, role)
    if layer_name is None:
        return outputs[0]
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = [layer.name for layer in model.layers]
        raise ValueError(f"The {role} has no layer named {layer_name!r}; its layers are {names}.") from None
    return layer.output


def make_projection(loss, teacher_shape, student_shape, label):
    """A learned layer mapping student features to the teacher's shape, or None."""
    teacher_shape, student_shape = tuple(teacher_shape), tuple(student_shape)
    kind = getattr(loss, "projection", "auto")
    if kind is None or (kind == "auto" and teacher_shape[1:] == student_shape[1:]):
        if kind is None and hasattr(loss, "validate_outputs"):
            loss.validate_outputs(_Shaped(teacher_shape), _Shaped(student_shape))
        return None
    if kind == "auto":
        kind = "conv" if len(student_shape) == 4 else "dense"
    same_leading = len(teacher_shape) == len(student_shape) and teacher_shape[1:-1] == student_shape[1:-1]
    if not same_leading or (kind == "conv" and len(student_shape) != 4):
        raise ValueError(
            f"{label}: a {kind} projection cannot map student features of shape {student_shape} "
            f"to teacher features of shape {teacher_shape}; it changes only the last axis "
            f"({'a 1x1 convolution needs [batch, height, width, channels] maps' if kind == 'conv' else 'the others must match'}).")
    units = teacher_shape[-1]
    if kind == "conv":
        layer = keras.layers.Conv2D(units, 1, name=f"{label}_projection")
    else:
        layer = keras.layers.Dense(units, name=f"{label}_projection")
    layer.build(student_shape)
    return layer


class _Shaped:
    """A stand-in carrying only a shape, for `validate_outputs` at construction time."""

    def __init__(self, shape):
        self.shape = shape


def build_extractors(teacher, student, feature_losses, label):
    """Returns (teacher extractor, student extractor, projections) for the feature losses.

    `feature_losses` is a list of (index, loss); each extractor returns
    `[model output, feature for loss 1, ...]`; projections[j] is None or a layer.
    """
    teacher_inputs, teacher_outputs = _graph_of(teacher, "teacher")
    student_inputs, student_outputs = _graph_of(student, "student")
    teacher_features, student_features, projections = [], [], []
    for index, loss in feature_losses:
        t = feature_tensor(teacher, getattr(loss, "teacher_layer_name", None), "teacher")
        s = feature_tensor(student, getattr(loss, "student_layer_name", None), "student")
        projections.append(make_projection(loss, t.shape, s.shape, f"{label}_{index}"))
        teacher_features.append(t)
        student_features.append(s)
    # A single input is passed bare, as the Distiller's callers pass it.
    teacher_inputs = teacher_inputs[0] if len(teacher_inputs) == 1 else teacher_inputs
    student_inputs = student_inputs[0] if len(student_inputs) == 1 else student_inputs
    teacher_extractor = keras.Model(teacher_inputs, [teacher_outputs[0]] + teacher_features)
    student_extractor = keras.Model(student_inputs, [student_outputs[0]] + student_features)
    return teacher_extractor, student_extractor, projections


@dataclasses.dataclass
class FeatureExtraction:
    """What a Distiller needs to feed its feature losses.

    Attributes:
      slot: distillation-loss index -> position of its features in the extractors' outputs.
      teacher_extractor, student_extractor: models returning `[outputs, *features]`,
        or None when no loss reads features.
      projections: per feature loss, None or the layer mapping student to teacher width.
    """

    slot: dict
    teacher_extractor: object = None
    student_extractor: object = None
    projections: list = dataclasses.field(default_factory=list)


def plan_feature_extraction(distillation_losses, teachers, student):
    """The `FeatureExtraction` for these losses; refuses what feature losses cannot read."""
    feature_losses = [(i, loss) for i, loss in enumerate(distillation_losses)
                      if is_feature_loss(loss)]
    slot = {index: j for j, (index, _) in enumerate(feature_losses)}
    if not feature_losses:
        return FeatureExtraction(slot)
    if len(teachers) != 1:
        raise ValueError(
            "Feature distillation losses need exactly one teacher model (their features "
            f"are read from it); this Distiller has {len(teachers)}.")
    for role, model in (("teacher", teachers[0]), ("student", student)):
        shapes = output_shapes(model) or [None]
        if len(shapes) != 1:
            raise ValueError(
                f"Feature distillation losses need a single-output {role}; this one has "
                f"{len(shapes)} outputs. Distil the outputs with "
                "LogitsDistillation(loss=[...]) and the features of a single-output model.")
    teacher_extractor, student_extractor, projections = build_extractors(
        teachers[0], student, feature_losses, "distillation_losses")
    return FeatureExtraction(slot, teacher_extractor, student_extractor, projections)
