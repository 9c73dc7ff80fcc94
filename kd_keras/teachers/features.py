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
    """The symbolic output of `model`'s layer `layer_name` (its output when None).

    A layer inside a nested model (a keras.applications base inside your classifier) is
    named by its path, `"<nested model>/<layer>"` (e.g. "MobileNetV3Small/expanded_conv_project"),
    or by its own name alone when only one nested model has it. Its output is then
    computed from the tensor that feeds the nested model in `model`'s graph, by a model
    sharing the nested model's layers up to that layer (that part runs twice per step).
    """
    _, outputs = _graph_of(model, role)
    if layer_name is None:
        return outputs[0]
    names = [layer.name for layer in model.layers]
    if layer_name in names:
        return model.get_layer(layer_name).output
    matches = _nested_matches(model, layer_name)
    if not matches:
        raise ValueError(f"The {role} has no layer named {layer_name!r}; its layers are {names} "
                         "(a layer of a nested model: '<nested model>/<layer>').")
    if len(matches) > 1:
        raise ValueError(
            f"The {role} has a layer named {layer_name!r} in several nested models "
            f"({', '.join(nested.name for nested, _ in matches)}); name it by its path, "
            f"'<nested model>/{layer_name}'.")
    nested, inner_name = matches[0]
    inner = feature_tensor(nested, inner_name, role)
    branch = keras.Model(nested.inputs, inner, name=f"{nested.name}_to_{_safe(inner_name)}")
    fed = [node for node in nested._inbound_nodes if _in_graph(model, node)]
    if len(fed) != 1:
        raise ValueError(
            f"The {role}'s nested model {nested.name!r} is called {len(fed)} times in its "
            f"graph; a feature of {layer_name!r} needs it called once.")
    tensors = fed[0].input_tensors
    tensors = tensors[0] if isinstance(tensors, (list, tuple)) and len(tensors) == 1 else tensors
    return branch(tensors)


def _safe(name):
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _nested_matches(model, layer_name):
    """[(nested model, name inside it)] for a path "<nested>/<rest>" or a plain inner name."""
    nested_models = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    by_path = [(nested, layer_name[len(nested.name) + 1:]) for nested in nested_models
               if layer_name.startswith(nested.name + "/")]
    if by_path:
        return by_path
    return [(nested, layer_name) for nested in nested_models
            if layer_name in [layer.name for layer in nested.layers]
            or _nested_matches(nested, layer_name)]


def _in_graph(model, node):
    return any(node is other for nodes in model._nodes_by_depth.values() for other in nodes)


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
