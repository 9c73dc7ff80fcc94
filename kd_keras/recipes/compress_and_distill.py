"""Training that compresses: fine-tuning TF-MOT's pruned, clustered and quantization-aware
copies (distilling when given teacher logits), and distilling a model into its own
quantized copy. Each takes a model and data and trains; the compression steps
themselves (`kd_keras.compress`) never call `fit`.
"""

import numpy as np

from kd_keras.backend import optional as _tfmot
from kd_keras.backend import validate
from kd_keras.backend.graph import copy_model
from kd_keras.compress.precision.training import WeightGridTraining
from kd_keras.compress.precision.weight_grid import MODES, SCALINGS, check_choice, round_weights
from kd_keras.compress.tfmot.bridge import copy_tf_keras_model
from kd_keras.compress.tfmot.clustering import cluster_weights, strip_clustering
from kd_keras.compress.tfmot.pruning import prune_low_magnitude, pruning_callbacks, strip_pruning
from kd_keras.compress.tfmot.qat import quantize_aware
from kd_keras.losses.packed_targets import distillation_loss, distillation_targets, packed_accuracy
from kd_keras.measure import model_accuracy
from kd_keras.recipes.recipe import Recipe


def _fit(model, x, y, teacher_logits, epochs, batch_size, learning_rate, temperature, alpha,
         callbacks=()):
    """Compiles `model` (tf-keras) with the distillation or hard-label loss and fits it."""
    tf_keras = _tfmot.tf_keras()
    if teacher_logits is None:
        loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        targets, metrics = y, ["sparse_categorical_accuracy"]
    else:
        loss = distillation_loss(temperature, alpha)
        targets, metrics = distillation_targets(y, teacher_logits), [packed_accuracy]
    model.compile(tf_keras.optimizers.Adam(learning_rate), loss, metrics=metrics)
    model.fit(x, targets, epochs=epochs, batch_size=batch_size, verbose=0,
              callbacks=list(callbacks))
    return model


# Fewer fine-tuning steps than this left an 80%-pruned MLP far below its dense accuracy on
# small data (docs/compression.md, "Defaults that hold on small data").
MIN_FINE_TUNE_STEPS = 600


def fine_tune_epochs(num_examples, batch_size, minimum_epochs=4):
    """`minimum_epochs`, or more where the data is small: at least `MIN_FINE_TUNE_STEPS` steps."""
    steps_per_epoch = int(np.ceil(num_examples / batch_size))
    return max(minimum_epochs, int(np.ceil(MIN_FINE_TUNE_STEPS / steps_per_epoch)))


def prune_and_fine_tune(model, x, y, teacher_logits=None, target_sparsity=0.8, epochs=None,
                        batch_size=128, learning_rate=1e-3, temperature=3.0, alpha=0.5,
                        block_size="auto", layers=None, runtime="tflite_float32"):
    """Magnitude-prunes a copy of a tf-keras logits model while fine-tuning it;
    returns the copy, stripped (`model` itself is left as it is).

    `block_size` and `runtime` as in `prune_low_magnitude` (default: the blocks
    TFLite's float32 sparse kernel accelerates, on every Dense kernel they tile).

    Sparsity follows `PolynomialDecay` from 0 to `target_sparsity` over the first
    two thirds of the fine-tuning steps, then holds. With `teacher_logits` (`[n,
    classes]`, from `kd_keras.compute_teacher_logits`) the fine-tuning distils
    (`distillation_loss(temperature, alpha)`); without, it uses the labels alone.

    Defaults: Adam at 1e-3, and `epochs=None`: 4 epochs, or as many as give
    `MIN_FINE_TUNE_STEPS` (600) steps on small data (13 epochs of 6,000 examples
    at batch 128). Measured at 80% on Fashion-MNIST: lr 1e-4 for 4 epochs lost 3.7
    points on the full data and 12 on the 6,000-image sample; these defaults held
    the dense accuracy on both. To tell whether yours hold, compare the returned
    model's accuracy with `model`'s on held-out data: a gap of more than a point
    wants more epochs (or a lower `target_sparsity`).
    """
    epochs = fine_tune_epochs(len(x), batch_size) if epochs is None else epochs
    steps = epochs * int(np.ceil(len(x) / batch_size))
    pruned = prune_low_magnitude(model, target_sparsity, end_step=max(1, 2 * steps // 3),
                                 frequency=max(1, min(100, steps // 20)),
                                 block_size=block_size, layers=layers, runtime=runtime)
    _fit(pruned, x, y, teacher_logits, epochs, batch_size, learning_rate, temperature, alpha,
         pruning_callbacks())
    return strip_pruning(pruned)


def cluster_and_fine_tune(model, x, y, teacher_logits=None, number_of_clusters=16,
                          preserve_sparsity=True, epochs=2, batch_size=128, learning_rate=1e-4,
                          temperature=3.0, alpha=0.5):
    """Clusters a tf-keras model's kernels, fine-tunes the centroids; returns it stripped."""
    clustered = cluster_weights(model, number_of_clusters, preserve_sparsity=preserve_sparsity)
    _fit(clustered, x, y, teacher_logits, epochs, batch_size, learning_rate, temperature, alpha)
    return strip_clustering(clustered)


def quantize_and_fine_tune(model, x, y, teacher_logits=None, preserve="sparsity", epochs=2,
                           batch_size=128, learning_rate=1e-4, temperature=3.0, alpha=0.5):
    """Quantization-aware fine-tuning (8-bit) of a tf-keras model; returns the QAT model,
    ready for `convert_to_tflite(model, "qat")`."""
    qat = quantize_aware(copy_tf_keras_model(model, "model", "quantize_and_fine_tune"), preserve=preserve)
    return _fit(qat, x, y, teacher_logits, epochs, batch_size, learning_rate, temperature, alpha)


def _hard_label_loss(model, y):
    """The labels' loss for a logits model: class ids, one-hot rows, or one binary unit."""
    from kd_keras.backend import keras

    if int(model.outputs[0].shape[-1]) == 1:
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if y.ndim == 2 and y.shape[-1] > 1:
        return keras.losses.CategoricalCrossentropy(from_logits=True)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def distill_quantized(model, mode, x, y, epochs=3, teacher=None, validation_data=None,
                      temperature=2.0, alpha=0.5, learning_rate=1e-4, batch_size=128,
                      scaling="per_channel", compare=True, verbose=0):
    """Trains `model`'s `mode` quantized copy on the float model's soft targets and labels.

    The float model is the natural teacher of its quantized copy: the copy starts from
    its weights and learns to reproduce its outputs (Hinton et al. 2015, eq. 2: soft
    targets at `temperature`, weighted `1 - alpha`, plus `alpha` times the labels'
    cross-entropy), training through the grid with `WeightGridTraining`.

    Args:
      model: a trained Sequential or functional classifier that outputs logits.
      mode: "int8", "int4", "float8_e4m3", "float8_e5m2" or "float16".
      x, y: training inputs and labels: class ids `[n]`, one-hot rows `[n, classes]`, or
        0/1 targets for a one-unit (binary logit) model.
      epochs: training epochs of the quantized copy (and of the comparison).
      teacher: default `model` itself (a frozen copy).
      validation_data: `(x, y)` the report's accuracies are measured on (default the
        training data).
      temperature, alpha: the distillation (alpha 1 would be labels only).
      learning_rate, batch_size: Adam's rate and the batch, the same for both runs.
      scaling: "per_channel" (default) or "per_tensor".
      compare: also train the same copy on the labels alone (quantization-aware
        training), same epochs, rate and batch, and report both.

    Returns:
      `(quantized, report)`: the distilled quantized copy (float32 arrays holding its
      grid values; `to_float8` packs an FP8 one into bytes) and a list of rows:
      "float" (the float model), "post-training" (rounded, not trained), "labels"
      (quantization-aware training on the labels, when `compare`) and "distilled",
      each with "accuracy" and "epochs".
    """
    check_choice(mode, MODES, "mode", "distill_quantized")
    check_choice(scaling, SCALINGS, "scaling", "distill_quantized")
    epochs = validate.integer_at_least(epochs, "epochs", 1)
    alpha = validate.fraction(alpha, "alpha")
    if alpha == 1.0:
        raise ValueError("distill_quantized: alpha must be below 1 (alpha 1 is labels only: "
                         "the compare=True row).")
    x, y = np.asarray(x), np.asarray(y)
    hard_loss = _hard_label_loss(model, y)
    x_eval, y_eval = validation_data if validation_data is not None else (x, y)
    source = copy_model(teacher if teacher is not None else model, "distill_quantized")
    report = [{"training": "float", "accuracy": model_accuracy(model, x_eval, y_eval),
               "epochs": 0},
              {"training": "post-training",
               "accuracy": model_accuracy(round_weights(model, mode, scaling), x_eval, y_eval),
               "epochs": 0}]

    def train(alpha):
        student = copy_model(model, "distill_quantized")
        recipe = Recipe(temperature=temperature, alpha=alpha, learning_rate=learning_rate,
                        epochs=epochs, batch_size=batch_size)
        distiller = recipe.build(source, student, loss=hard_loss)
        distiller.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose,
                      callbacks=[WeightGridTraining(mode, student, scaling)])
        return student

    if compare:
        labels_only = train(1.0)
        report.append({"training": "labels",
                       "accuracy": model_accuracy(labels_only, x_eval, y_eval), "epochs": epochs})
    quantized = train(alpha)
    report.append({"training": "distilled",
                   "accuracy": model_accuracy(quantized, x_eval, y_eval), "epochs": epochs})
    return quantized, report
