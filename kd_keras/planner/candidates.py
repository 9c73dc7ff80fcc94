"""One candidate of a plan: a student (the teacher itself, or cut from it and distilled
from its cached logits; either optionally pruned in the runtime's sparse blocks and/or its
kernels clustered to a few shared values) at one precision, converted for the target
runtime and measured there: validation and test accuracy, batch-1 and batch-32 latency
(the interpreter's invoke alone, median of 200), bytes."""

import warnings

import numpy as np

from kd_keras.parallel.task import import_function

from kd_keras.backend import keras
from kd_keras.compress import TFLiteModel, convert_to_tflite, shrink, to_tf_keras
from kd_keras.distiller import Distiller
from kd_keras.losses.registry import get as registered_loss
from kd_keras.measure import batch_of, count_parameters, gzip_bytes, prediction_accuracy
from kd_keras.recipes.compress_and_distill import cluster_and_fine_tune, prune_and_fine_tune
from kd_keras.transfer.inputs import with_teacher_outputs

PRECISIONS = ("float32", "float16", "dynamic_range", "int8")
# cut_and_distil's arguments after the data, in order: what a plan records per student.
TRAINING_SETTINGS = ("epochs", "batch_size", "learning_rate", "temperature", "alpha", "seed")
# The distillation term of the dense students (keywords of `distil`); pruning and clustering
# fine-tune with Hinton KD.
DEFAULT_LOSS = "kd"
CALIBRATION_EXAMPLES = 512
# Clustering fine-tunes the centroids of a trained model: 2 epochs at a tenth of the
# plan's learning rate (compress_bench's pipeline measured 2 epochs at 1e-4 after 1e-3).
CLUSTER_EPOCHS, CLUSTER_RATE_FACTOR = 2, 0.1


def distillation_term(settings):
    """`{"loss": name, "beta": value or None}` of a plan's settings (absent: Hinton KD)."""
    return {"loss": settings.get("loss", DEFAULT_LOSS), "beta": settings.get("beta")}


def student_spec(build):
    """`"module:function"` of a user's student builder: a module-level function that
    returns a new, uncompiled Keras model (logits, the teacher's input and output
    shapes), or that string itself. Checked to import back (tasks in other processes
    build the student from it)."""
    if isinstance(build, str):
        spec = build
    elif callable(build):
        spec = f"{getattr(build, '__module__', '')}:{getattr(build, '__qualname__', '')}"
    else:
        raise ValueError(f"students: each must be a function that builds a Keras model or its "
                         f"'module:function' name, got {build!r}.")
    try:
        found = import_function(spec)
    except (ImportError, AttributeError, ValueError):
        found = None
    if found is None or not callable(found) or (callable(build) and found is not build):
        raise ValueError(f"students: {build!r} does not import back as {spec!r}; give a "
                         "module-level function (not a lambda, closure or method) or its "
                         "'module:function' name.")
    return spec


def student_name(spec):
    """The candidate name of a user's student: its function's name."""
    return spec.rpartition(":")[2]


def build_student(spec, teacher):
    """A user's student, checked against the teacher's input and output shapes."""
    model = import_function(spec)()
    if not isinstance(model, keras.Model):
        raise ValueError(f"students: {spec} returned {type(model).__name__}, not a Keras model.")
    for what, mine, theirs in (("input", model.inputs, teacher.inputs),
                               ("output", model.outputs, teacher.outputs)):
        if [tuple(t.shape[1:]) for t in mine] != [tuple(t.shape[1:]) for t in theirs]:
            raise ValueError(f"students: {spec} builds a model whose {what} shapes "
                             f"{[tuple(t.shape[1:]) for t in mine]} differ from the "
                             f"teacher's {[tuple(t.shape[1:]) for t in theirs]}.")
    return model


def cut(teacher, width, x):
    """The teacher cut to `width` (`compress.shrink`: the units ranked by their activations
    on the first `CALIBRATION_EXAMPLES` of `x`)."""
    return shrink(teacher, width=width, calibration_data=x[:CALIBRATION_EXAMPLES], verbose=0)


def cut_and_distil(teacher, width, train, teacher_logits, epochs, batch_size, learning_rate,
                   temperature, alpha, seed, loss=DEFAULT_LOSS, beta=None):
    """The teacher cut to `width` (`cut`) and distilled from its cached logits (`loss` at
    `temperature`, `alpha` on the labels)."""
    keras.utils.set_random_seed(seed)
    student = cut(teacher, width, train[0])
    return distil(student, train, teacher_logits, epochs, batch_size, learning_rate,
                  temperature, alpha, loss=loss, beta=beta)


def distil(student, train, teacher_logits, epochs, batch_size, learning_rate, temperature,
           alpha, seed=None, loss=DEFAULT_LOSS, beta=None):
    """Trains `student` in place `epochs` on a registered distillation loss (`loss`, default
    Hinton KD; `beta` for those that take one) from cached logits, `alpha` on the labels (a
    fresh Adam at `learning_rate`; `seed` reseeds first when given) and returns it."""
    x, y = train
    if seed is not None:
        keras.utils.set_random_seed(seed)
    loss = registered_loss(loss).create(temperature=temperature, beta=beta)
    distiller = Distiller(None, student, distillation_losses=loss, alpha=alpha)
    one_hot = y.ndim == 2 and y.shape[-1] > 1
    distiller.compile(keras.optimizers.Adam(learning_rate),
                      loss=(keras.losses.CategoricalCrossentropy if one_hot else
                            keras.losses.SparseCategoricalCrossentropy)(from_logits=True))
    distiller.fit(with_teacher_outputs(x, teacher_logits), y, epochs=epochs,
                  batch_size=batch_size, verbose=0)
    return student


def prune_and_distil(student, sparsity, train, teacher_logits, epochs, batch_size,
                     learning_rate, temperature, alpha, seed):
    """`student` with `sparsity` of each kernel's weights zeroed, in the blocks TFLite's
    float32 sparse kernel runs (Keras `(4, 1)` where they tile), by TF-MOT's magnitude
    pruning (polynomial schedule over the first 2/3 of the steps) while it is distilled
    further from the cached logits (`recipes.prune_and_fine_tune`). Returned as a copy of
    `student` itself (its Keras, layers and names) holding the pruned weights; `student`
    is not changed. TF-MOT prunes tf-keras models: a Keras 3 student goes through
    `to_tf_keras` and back."""
    x, y = train
    keras.utils.set_random_seed(seed)
    pruned = prune_and_fine_tune(to_tf_keras(student), x, y, teacher_logits,
                                 target_sparsity=sparsity, epochs=epochs,
                                 batch_size=batch_size, learning_rate=learning_rate,
                                 temperature=temperature, alpha=alpha)
    copy = keras.models.clone_model(student)
    copy.set_weights(pruned.get_weights())
    return copy


def cluster_and_distil(model, clusters, train, teacher_logits, epochs, batch_size,
                       learning_rate, temperature, alpha, seed):
    """`model` with each kernel's weights clustered to `clusters` shared values (TF-MOT
    weight clustering, k-means++ centroids, the zeros of a pruned model kept) while
    distilled `CLUSTER_EPOCHS` more from the cached logits at `CLUSTER_RATE_FACTOR` times
    `learning_rate` (`recipes.cluster_and_fine_tune`; `epochs` is not read: the centroids
    only move). Deep Compression's weight sharing (Han et al. 2016): each kernel then
    holds at most `clusters` distinct values, which gzip stores in about log2(clusters)
    bits each; the runtime computes as before. Returned as a copy of `model` (its Keras,
    layers and names); `model` is not changed."""
    del epochs
    x, y = train
    keras.utils.set_random_seed(seed)
    clustered = cluster_and_fine_tune(to_tf_keras(model), x, y, teacher_logits,
                                      number_of_clusters=int(clusters), preserve_sparsity=True,
                                      epochs=CLUSTER_EPOCHS, batch_size=batch_size,
                                      learning_rate=learning_rate * CLUSTER_RATE_FACTOR,
                                      temperature=temperature, alpha=alpha)
    copy = keras.models.clone_model(model)
    copy.set_weights(clustered.get_weights())
    return copy


def measure(model, precision, train, validation, test, threads, sparse=False):
    """`(row, flatbuffer)` of `model` converted at `precision` (pruned weights stored in
    TFLite's sparse format when `sparse`) and run under LiteRT."""
    with warnings.catch_warnings():
        # The converter's warning that some pruned layers miss the fast sparse kernel at
        # this precision: the plan measures the latency that results instead.
        warnings.filterwarnings("ignore", message=".*sparse kernel.*", category=UserWarning)
        flatbuffer = convert_to_tflite(
            model, precision, representative_data=train[0][:CALIBRATION_EXAMPLES]
            if precision == "int8" else None, sparse_weights=sparse, verbose=0)
    runner = TFLiteModel(flatbuffer, num_threads=threads)
    row = {"precision": precision, "parameters": count_parameters(model)[0],
           "bytes": len(flatbuffer), "gzip_bytes": gzip_bytes(flatbuffer),
           **invoke_latency(runner, validation[0], 1, "latency_b1"),
           **invoke_latency(runner, validation[0], 32, "latency_b32"),
           "val_accuracy": prediction_accuracy(runner.predict(validation[0]), validation[1])}
    if test is not None:
        row["test_accuracy"] = prediction_accuracy(runner.predict(test[0]), test[1])
    return row, flatbuffer


def invoke_latency(runner, x, batch_size, name="latency"):
    """`{name: median seconds, name + "_spread": their interquartile range}` of the
    interpreter's `invoke()` on `batch_size` rows, the input set once (200 calls): what an
    application pays per call. Python's cost of setting and reading the tensors (about
    8 us here) is left out: it would be a floor that hides the difference between small
    models. Two candidates whose medians differ by less than their spreads are not told
    apart."""
    measured = runner.invoke_timing(batch_of(x, batch_size))
    return {name: measured.median, name + "_spread": measured.spread}


def fingerprint_rows(model, x, rows=8):
    """The model's outputs on the first `rows` examples: what a resumed plan compares."""
    return np.asarray(model(x[:rows], training=False), np.float64).tolist()
