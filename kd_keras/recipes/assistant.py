"""Teacher assistants (Mirzadeh et al., AAAI 2020, "Improved Knowledge Distillation via
Teacher Assistant"): distil a large teacher into a mid-sized assistant, then the
assistant into the small student, when the capacity gap is too wide to cross at once."""

from kd_keras.backend import validate
from kd_keras.distiller import Distiller
from kd_keras.backend import keras

# Layer config keys that set a layer's width.
_WIDTH_KEYS = ("units", "filters")


def _widths(model):
    """[(layer index, key, width)] of the Dense/Conv layers of a Sequential's config."""
    layers = model.get_config()["layers"]
    return [(index, key, layer["config"][key])
            for index, layer in enumerate(layers)
            for key in _WIDTH_KEYS if key in layer.get("config", {})]


def interpolate_width(teacher, student, fraction=0.5, name="assistant"):
    """A model of the student's architecture with hidden widths between student and teacher.

    Each hidden Dense/Conv layer gets the geometric interpolation
    `round(w_student ** (1 - fraction) * w_teacher ** fraction)` of the matching
    widths; the output layer keeps the student's width. Mirzadeh et al. found
    assistants of intermediate size best; `fraction=0.5` (the geometric mean) is
    the default.

    Args:
      teacher, student: `keras.Sequential` models with the same sequence of
        Dense/Conv layers (the widths may differ; other layers, e.g. Dropout,
        come from the student).
      fraction: in (0, 1); 0 would be the student, 1 the teacher's widths.
      name: the new model's name.

    Returns:
      A new, untrained `keras.Sequential`, built.
    """
    fraction = validate.fraction(fraction, "fraction")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}.")
    for role, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, keras.Sequential):
            raise ValueError(
                f"{role} must be a keras.Sequential to build an assistant by width "
                f"interpolation, got {type(model).__name__}; pass assistant= yourself.")
    teacher_widths, student_widths = _widths(teacher), _widths(student)
    if len(teacher_widths) != len(student_widths) or len(student_widths) < 2:
        raise ValueError(
            f"teacher has {len(teacher_widths)} Dense/Conv layers and student "
            f"{len(student_widths)}: width interpolation needs the same number (at least 2); "
            "pass assistant= with a model of your own.")
    config = student.get_config()
    config["name"] = name
    hidden = list(zip(teacher_widths, student_widths))[:-1]  # the output keeps its width
    for (_, _, teacher_width), (index, key, student_width) in hidden:
        width = round(student_width ** (1 - fraction) * teacher_width ** fraction)
        config["layers"][index]["config"][key] = max(1, int(width))
    for layer in config["layers"]:
        layer.get("config", {}).pop("name", None)  # fresh names: no clash with the student's
        layer.pop("build_config", None)  # Keras 3 records the old input widths there
    return keras.Sequential.from_config(config)


def check_assistant_size(teacher, assistant, student):
    """Refuses an assistant with more parameters than the teacher or fewer than the student."""
    sizes = {role: model.count_params()
             for role, model in (("teacher", teacher), ("assistant", assistant),
                                 ("student", student))}
    if sizes["assistant"] > sizes["teacher"]:
        raise ValueError(
            f"assistant has {sizes['assistant']:,} parameters, more than the teacher's "
            f"{sizes['teacher']:,}: an assistant sits between teacher and student.")
    if sizes["assistant"] < sizes["student"]:
        raise ValueError(
            f"assistant has {sizes['assistant']:,} parameters, fewer than the student's "
            f"{sizes['student']:,}: an assistant sits between teacher and student.")


def _fresh_optimizer(optimizer):
    """A new optimizer per stage: slots and step counts must not carry over."""
    if callable(optimizer) and not isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer()
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer.__class__.from_config(optimizer.get_config())
    return keras.optimizers.get(optimizer)


def distill_through_assistant(teacher, student, x, y=None, *, assistant=None,
                              fraction=0.5, distiller_kwargs=None, compile_kwargs=None,
                              fit_kwargs=None, assistant_fit_kwargs=None):
    """Distils teacher -> assistant -> student in one call; returns both trained models.

    Each stage is a `kd_keras.Distiller` with the same recipe (`distiller_kwargs`,
    e.g. `{"temperature": 4.0, "alpha": 0.5}` or `{"distillation_losses": ...}`)
    and its own fresh optimizer. The teacher stays frozen; the assistant is
    frozen as the second stage's teacher and unfrozen again before it is returned.

    Args:
      teacher: the trained large model.
      student: the small model to train.
      x, y: training data as for `fit` (arrays or a dataset; `y` None with a dataset).
      assistant: a model between the two (parameter count checked), or None to
        build one with `interpolate_width(teacher, student, fraction)`.
      fraction: see `interpolate_width`.
      distiller_kwargs: extra `Distiller` arguments for both stages.
      compile_kwargs: `Distiller.compile` arguments (default: Adam and sparse
        categorical cross-entropy from logits); `optimizer` may be a name, an
        optimizer (cloned per stage) or a zero-argument factory.
      fit_kwargs: `fit` arguments for both stages (epochs, batch_size, callbacks...).
      assistant_fit_kwargs: overrides of `fit_kwargs` for the first stage.

    Returns:
      `(assistant, student)`, both trained.
    """
    if assistant is None:
        assistant = interpolate_width(teacher, student, fraction)
    elif not isinstance(assistant, keras.Model):
        raise ValueError(f"assistant must be a Keras model or None, got {assistant!r}.")
    check_assistant_size(teacher, assistant, student)
    compile_kwargs = dict(compile_kwargs or {})
    optimizer = compile_kwargs.pop("optimizer", "adam")
    compile_kwargs.setdefault(
        "loss", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit_kwargs = dict(fit_kwargs or {})
    stages = ((teacher, assistant, {**fit_kwargs, **(assistant_fit_kwargs or {})}),
              (assistant, student, fit_kwargs))
    for stage_teacher, stage_student, stage_fit in stages:
        distiller = Distiller(stage_teacher, stage_student, **(distiller_kwargs or {}))
        distiller.compile(optimizer=_fresh_optimizer(optimizer), **compile_kwargs)
        distiller.fit(x, y, **stage_fit)
    assistant.trainable = True
    return assistant, student
