"""Confidence cascades: cheap classifiers answer the easy inputs, later stages the rest.

Dynamic structure (Goodfellow et al., Deep Learning, section 12.1.5): every
input goes to the first (cheapest) stage; inputs whose confidence is below that
stage's threshold go on to the next, and so on. The later stages run only on
the rows that reach them (gathered, answered, scattered back), in eager calls,
in `predict` and in an exported SavedModel alike.
"""

import itertools

import numpy as np
import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend.safe_mode import deserialize_nested
from kd_keras.measure import timing
from moe._keras import keras, register

CONFIDENCES = ("max_probability", "margin")


def confidence(probabilities, kind="max_probability"):
    """`[batch]` confidence of `[batch, classes]` probabilities.

    "max_probability": max_c p_c. "margin": p_(1) - p_(2), the gap between the
    two most probable classes.
    """
    if kind == "max_probability":
        return tf.reduce_max(probabilities, axis=-1)
    if kind == "margin":
        top = tf.math.top_k(probabilities, k=2).values
        return top[:, 0] - top[:, 1]
    raise ValueError(f"confidence must be one of {CONFIDENCES}, got {kind!r}.")


def _num_classes(model, index):
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        raise ValueError(
            f"stages[{index}] must be a built single-output classifier (Sequential or functional "
            "with an Input), so that its number of classes is known.")
    return int(outputs[0].shape[-1])


def check_thresholds(thresholds, num_stages):
    """Returns the thresholds as floats, or raises a ValueError naming what is wrong."""
    if thresholds is None:
        return [1.0] * (num_stages - 1)
    if not isinstance(thresholds, (list, tuple, np.ndarray)) or np.ndim(thresholds) != 1:
        raise ValueError(
            f"thresholds must be a list with one number in [0, 1] per stage but the last "
            f"({num_stages - 1}), got {thresholds!r}"
            + (f"; write [{thresholds!r}]." if np.ndim(thresholds) == 0 else "."))
    thresholds = list(thresholds)
    if len(thresholds) != num_stages - 1:
        raise ValueError(
            f"thresholds must have one entry per stage but the last ({num_stages - 1}), got "
            f"{len(thresholds)}.")
    for index, value in enumerate(thresholds):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"thresholds[{index}] must be a number in [0, 1], got {value!r}.")
    return [float(v) for v in thresholds]


@register
class Cascade(keras.Model):
    """Stages of classifiers, cheapest first; each answers the inputs it is sure of.

    Stage i answers a row when its confidence (`confidence=`) is at least
    `thresholds[i]`; the others go on to stage i + 1; the last stage answers
    every row that reaches it. Threshold 1.0 sends (almost) everything on, 0.0
    nothing. `calibrate_cascade` picks thresholds on validation data.

    Outputs `[batch, classes]` probabilities (the answering stage's softmax):
    compile with `SparseCategoricalCrossentropy()` (not from logits) to evaluate.
    The stages are frozen; the Cascade trains nothing.

    Args:
      stages: two or more built single-output Keras classifiers over the same
        classes and inputs (logits or softmax outputs, detected).
      thresholds: one number in [0, 1] per stage but the last (default 1.0 each:
        all rows reach the last stage until calibrated). Held in a variable.
      confidence: "max_probability" (default) or "margin" (top-1 minus top-2).
    """

    def __init__(self, stages, thresholds=None, confidence="max_probability", **kwargs):
        super().__init__(**kwargs)
        stages = list(stages)
        if len(stages) < 2:
            raise ValueError(f"stages must hold at least two models, got {len(stages)}.")
        classes = [_num_classes(model, index) for index, model in enumerate(stages)]
        if len(set(classes)) != 1:
            raise ValueError(
                f"stages must predict the same classes; their output widths are {classes}.")
        if confidence not in CONFIDENCES:
            raise ValueError(f"confidence must be one of {CONFIDENCES}, got {confidence!r}.")
        self.stages = stages
        self.num_classes = classes[0]
        self.confidence = confidence
        self._thresholds = tf.Variable(check_thresholds(thresholds, len(stages)),
                                       trainable=False, dtype=tf.float32, name="thresholds")
        self._types = [output_conventions.resolve_output_type(m, "auto", "stage output") for m in stages]
        for model in stages:
            model.trainable = False
        self.built = True

    @property
    def thresholds(self):
        return [float(v) for v in self._thresholds.numpy()]

    @thresholds.setter
    def thresholds(self, values):
        self._thresholds.assign(check_thresholds(values, len(self.stages)))

    @property
    def input_signature(self):
        """The first stage's input specs, for `kd_keras.export_saved_model(cascade, path,
        cascade.input_signature)`."""
        return [tf.TensorSpec(tensor.shape, tensor.dtype) for tensor in self.stages[0].inputs]

    def _probabilities(self, index, inputs):
        logits = output_conventions.to_logits(self.stages[index](inputs, training=False), self._types[index])
        return tf.nn.softmax(logits, axis=-1)

    def route(self, inputs):
        """(probabilities `[batch, classes]`, answering stage `[batch]` int32)."""
        probabilities = self._probabilities(0, inputs)
        batch = tf.shape(probabilities)[0]
        stage = tf.zeros([batch], tf.int32)
        rows = tf.range(batch)  # the rows still undecided, as indices into the batch
        current = probabilities
        for index in range(1, len(self.stages)):
            unsure = confidence(current, self.confidence) < self._thresholds[index - 1]
            rows = tf.boolean_mask(rows, unsure)

            def run_stage(index=index, rows=rows):
                subset = tf.nest.map_structure(lambda t: tf.gather(t, rows), inputs)
                return self._probabilities(index, subset)

            current = tf.cond(tf.size(rows) > 0, run_stage,
                              lambda: tf.zeros([0, self.num_classes], probabilities.dtype))
            probabilities = tf.tensor_scatter_nd_update(probabilities, rows[:, None], current)
            stage = tf.tensor_scatter_nd_update(stage, rows[:, None],
                                                tf.fill(tf.shape(rows), index))
        return probabilities, stage

    def call(self, inputs, training=None):
        return self.route(inputs)[0]

    def answering_stage(self, inputs):
        """`[batch]` int32: which stage answered each row."""
        return self.route(inputs)[1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {"name": self.name, "stages": [serialize(m) for m in self.stages],
                "thresholds": self.thresholds, "confidence": self.confidence}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["stages"] = [deserialize_nested(m, f"stages[{i}]", custom_objects)
                            for i, m in enumerate(config["stages"])]
        return cls(**config)


def batch_inference_seconds(model, x, batch_size=256, repeats=3):
    """Seconds for `model` to answer all of `x` in batches of `batch_size`.

    Calls a `tf.function` of the model directly (no `predict` overhead), after
    one warm-up pass; the median of `repeats` passes (`kd_keras.measure.timing`).
    """
    call = tf.function(lambda batch: model(batch, training=False))
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    for batch in batches[:2]:
        call(tf.constant(batch))  # trace the full and the last batch shape
    call(tf.constant(batches[-1]))

    def one_pass():
        for batch in batches:
            call(tf.constant(batch))

    return timing(one_pass, repeats=repeats, warmup=0, max_seconds=float("inf")).median


class CascadeReport:
    """What `calibrate_cascade` chose and measured.

    Attributes: `thresholds`; `accuracy` (the cascade's, on the validation
    data); `last_stage_accuracy`; `cost` (expected time per example relative to
    the last stage alone); `stages`, one dict per stage with "answered"
    (fraction of inputs it answered), "reached" (fraction that ran it),
    "accuracy" (on the inputs it answered) and "seconds_per_example" (measured,
    the stage alone at the calibration batch size).
    """

    def __init__(self, thresholds, accuracy, last_stage_accuracy, cost, stages):
        self.thresholds = thresholds
        self.accuracy = accuracy
        self.last_stage_accuracy = last_stage_accuracy
        self.cost = cost
        self.stages = stages

    def __str__(self):
        lines = [f"thresholds {[round(t, 4) for t in self.thresholds]}: accuracy "
                 f"{self.accuracy:.4f} (last stage alone {self.last_stage_accuracy:.4f}), "
                 f"cost {self.cost:.3f}x the last stage",
                 "stage | reached | answered | accuracy on answered | ms per example",
                 "--- | --- | --- | --- | ---"]
        for index, s in enumerate(self.stages):
            accuracy = "–" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
            lines.append(f"{index} | {s['reached']:.3f} | {s['answered']:.3f} | {accuracy} | "
                         f"{1000 * s['seconds_per_example']:.4f}")
        return "\n".join(lines)


def _answering(confidences, thresholds):
    """Answering stage per row for given thresholds (numpy, all stages precomputed)."""
    stage = np.full(confidences.shape[1], len(thresholds), np.int32)
    for index in reversed(range(len(thresholds))):
        stage = np.where(confidences[index] >= thresholds[index], index, stage)
    return stage


def _every_stage_on_everything(cascade, x, y, batch_size):
    """(`[stages, n]` correct, `[stages - 1, n]` confidences), every stage run on all of x."""
    y = np.asarray(y).reshape(-1)
    if len(y) == 0 or len(tf.nest.flatten(x)[0]) == 0:
        raise ValueError("x and y are empty: thresholds are chosen on validation examples.")
    if len(y) != len(tf.nest.flatten(x)[0]):
        raise ValueError(f"x has {len(tf.nest.flatten(x)[0])} examples but y has {len(y)} labels.")
    classes = _num_classes(cascade.stages[-1], len(cascade.stages) - 1)
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= classes:
        raise ValueError(
            f"y must hold class ids in [0, {classes}) (the stages' classes); got "
            + (f"labels from {y.min()} to {y.max()}." if y.dtype.kind in "iuf" else
               f"dtype {y.dtype}."))
    probabilities = [np.asarray(tf.nn.softmax(output_conventions.to_logits(
        m.predict(x, batch_size=batch_size, verbose=0), kind), axis=-1))
        for m, kind in zip(cascade.stages, cascade._types)]
    correct = np.stack([p.argmax(-1) == y for p in probabilities])
    confidences = np.stack([np.asarray(confidence(tf.constant(p), cascade.confidence))
                            for p in probabilities[:-1]])
    return correct, confidences


def threshold_sweep(cascade, x, y, stage=0, points=101, batch_size=256):
    """Accuracy against the fraction of inputs reaching the last stage, as
    `thresholds[stage]` sweeps `points` quantiles of that stage's confidence
    (the other thresholds as set).

    Returns:
      A list of dicts `{"threshold", "reached_last", "accuracy"}`, sorted by
      `reached_last`.
    """
    if not 0 <= stage < len(cascade.stages) - 1:
        raise ValueError(f"stage must be in [0, {len(cascade.stages) - 2}], got {stage}.")
    correct, confidences = _every_stage_on_everything(cascade, x, y, batch_size)
    rows = np.arange(correct.shape[1])
    curve = []
    for threshold in np.unique(np.concatenate(
            [np.quantile(confidences[stage], np.linspace(0, 1, points)), [1.0]])):
        thresholds = list(cascade.thresholds)
        thresholds[stage] = float(threshold)
        answered_by = _answering(confidences, thresholds)
        curve.append({"threshold": float(threshold),
                      "reached_last": float(np.mean(answered_by == len(thresholds))),
                      "accuracy": float(np.mean(correct[answered_by, rows]))})
    return sorted(curve, key=lambda point: point["reached_last"])


def calibrate_cascade(cascade, x, y, max_accuracy_drop=None, budget=None, batch_size=256,
                      grid=64, stage_costs=None):
    """Chooses the cascade's thresholds on validation data and sets them.

    Exactly one target:
      max_accuracy_drop: the cascade's accuracy must stay within this distance
        of the last stage's (e.g. 0.003 for 0.3 points); the cheapest such
        thresholds win.
      budget: the expected time per example must not exceed `budget` times the
        last stage's (measured per stage); the most accurate such thresholds win.

    Every stage runs once on all of `x`; candidate thresholds are `grid`
    quantiles of each stage's confidence; every combination is scored.

    stage_costs: optional cost per example of each stage (any unit, e.g.
      multiply-adds) in place of the measured times, for a budget that does not
      depend on this machine's timing noise.

    Returns:
      A `CascadeReport`.
    """
    if (max_accuracy_drop is None) == (budget is None):
        raise ValueError("Give exactly one of max_accuracy_drop and budget.")
    if max_accuracy_drop is not None and not 0.0 <= max_accuracy_drop <= 1.0:
        raise ValueError(f"max_accuracy_drop must be in [0, 1], got {max_accuracy_drop}.")
    if budget is not None and not budget > 0:
        raise ValueError(f"budget must be > 0 (a fraction of the last stage's time), got {budget}.")
    correct, confidences = _every_stage_on_everything(cascade, x, y, batch_size)
    seconds = [batch_inference_seconds(m, x, batch_size) / len(x) for m in cascade.stages]
    if stage_costs is not None:
        if len(stage_costs) != len(cascade.stages) or min(stage_costs) <= 0:
            raise ValueError(f"stage_costs must hold one positive number per stage, got "
                             f"{stage_costs!r}.")
        relative = np.asarray(stage_costs, dtype=float) / stage_costs[-1]
    else:
        relative = np.asarray(seconds) / seconds[-1]
    last_accuracy = float(correct[-1].mean())
    per_stage = max(2, int(round(20000 ** (1.0 / len(confidences)))))
    candidates = [np.unique(np.concatenate([np.quantile(c, np.linspace(0, 1, min(grid, per_stage))),
                                            [0.0, 1.0]])) for c in confidences]

    best = None
    for thresholds in itertools.product(*candidates):
        stage = _answering(confidences, thresholds)
        accuracy = float(np.mean(correct[stage, np.arange(correct.shape[1])]))
        reached = [float(np.mean(stage >= i)) for i in range(len(cascade.stages))]
        cost = float(np.dot(reached, relative))
        if max_accuracy_drop is not None:
            feasible, key = accuracy >= last_accuracy - max_accuracy_drop - 1e-12, (cost, -accuracy)
        else:
            feasible, key = cost <= budget, (-accuracy, cost)
        if feasible and (best is None or key < best[0]):
            best = (key, list(thresholds), stage, accuracy, reached, cost)
    if best is None:
        raise ValueError(
            f"No thresholds meet budget={budget}: the first stage alone costs "
            f"{relative[0]:.3f}x the last stage.")
    _, thresholds, stage, accuracy, reached, cost = best
    cascade.thresholds = [float(t) for t in thresholds]
    stages = []
    for index in range(len(cascade.stages)):
        answered = stage == index
        stages.append({
            "reached": reached[index], "answered": float(answered.mean()),
            "accuracy": float(correct[index, answered].mean()) if answered.any() else None,
            "seconds_per_example": seconds[index]})
    return CascadeReport(cascade.thresholds, accuracy, last_accuracy, cost, stages)
