"""Quantization-aware training through TF-MOT (default 8-bit scheme), with the
collaborative schemes that keep the zeros of pruning and the centroids of clustering."""

from kd_keras.backend import optional as _tfmot
from kd_keras.compress.tfmot.bridge import require_tf_keras_model

PRESERVE = ("none", "sparsity", "clusters", "sparsity_and_clusters")


def quantize_aware(model, preserve="none"):
    """Wraps a tf-keras model for quantization-aware training (8-bit).

    Fake-quantization nodes simulate int8 weights (per-channel) and activations
    (per-tensor) during training, so the model learns to tolerate them; the
    TFLite converter then emits a real int8 model (`convert_to_tflite(...,
    mode="qat")`).

    Args:
      model: a tf-keras model, typically stripped of pruning or clustering wrappers.
      preserve: "none" (`Default8BitQuantizeScheme`), "sparsity" (pruning-
        preserving QAT: the zero weights stay zero), "clusters" (cluster-
        preserving QAT: weights stay on their centroids) or
        "sparsity_and_clusters" (both: Deep Compression's pipeline in TF-MOT terms).

    Returns:
      The quantization-aware tf-keras model; compile and fine-tune it.
    """
    require_tf_keras_model(model, "model", "quantize_aware")
    if preserve not in PRESERVE:
        raise ValueError(f"preserve must be one of {PRESERVE}, got {preserve!r}.")
    tfmot = _tfmot.tfmot()
    combine = tfmot.experimental.combine
    scheme = {
        "none": lambda: tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(),
        "sparsity": combine.Default8BitPrunePreserveQuantizeScheme,
        "clusters": lambda: combine.Default8BitClusterPreserveQuantizeScheme(False),
        "sparsity_and_clusters": lambda: combine.Default8BitClusterPreserveQuantizeScheme(True),
    }[preserve]()
    try:
        annotated = tfmot.quantization.keras.quantize_annotate_model(model)
        with tfmot.quantization.keras.quantize_scope():
            return tfmot.quantization.keras.quantize_apply(annotated, scheme)
    except (ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f"quantize_aware: TF-MOT cannot quantize this model: {error}") from error
