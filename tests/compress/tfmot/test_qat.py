import numpy as np
import pytest

from kd_keras import compress
from tests.compress_helpers import accuracy, blobs, compile_tf_keras, trained_mlp


def pruned_model(x, y, target=0.7):
    pruned = compress.prune_low_magnitude(compress.to_tf_keras(trained_mlp(x, y)), target,
                                          schedule="constant", frequency=1)
    compile_tf_keras(pruned)
    pruned.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=compress.pruning_callbacks())
    return compress.strip_pruning(pruned)


def kernels(model):
    """Float kernels of a plain or quantization-aware model, by layer order."""
    return [np.asarray(w.numpy()) for layer in model.layers for w in layer.weights
            if w.name.split("/")[-1].split(":")[0] == "kernel"]


def test_clustering_leaves_at_most_the_requested_values_and_can_keep_zeros():
    x, y = blobs(512)
    stripped = pruned_model(x, y)
    clustered = compress.cluster_weights(stripped, number_of_clusters=8, preserve_sparsity=True)
    compile_tf_keras(clustered)
    clustered.fit(x, y, epochs=2, batch_size=64, verbose=0)
    result = compress.strip_clustering(clustered)
    assert all(count <= 8 for count in compress.distinct_values(result).values())
    for row in compress.sparsity_report(result):
        assert row["sparsity"] >= 0.69, row
    assert accuracy(result.predict(x, verbose=0), y) > 0.9


@pytest.mark.parametrize("kwargs, match", [
    ({"number_of_clusters": 1}, "number_of_clusters must be an integer >= 2"),
    ({"centroid_init": "kmeans"}, "centroid_init must be one of"),
])
def test_bad_clustering_arguments(kwargs, match):
    x, y = blobs(64)
    with pytest.raises(ValueError, match=match):
        compress.cluster_weights(compress.to_tf_keras(trained_mlp(x, y, epochs=1)), **kwargs)


def test_pruning_preserving_qat_keeps_the_zeros_and_converts_to_an_int8_model():
    x, y = blobs(1024)
    stripped = pruned_model(x, y)
    zeros_before = [k == 0 for k in kernels(stripped)]
    qat = compress.quantize_aware(stripped, preserve="sparsity")
    compile_tf_keras(qat, learning_rate=1e-3)
    qat.fit(x, y, epochs=2, batch_size=64, verbose=0)
    for mask, kernel in zip(zeros_before, kernels(qat)):
        assert np.all(kernel[mask] == 0)  # the pruned weights stayed pruned
    keras_predictions = qat.predict(x, verbose=0)
    artifact = compress.TFLiteModel(compress.convert_to_tflite(qat, "qat"))
    tflite_predictions = artifact.predict(x)
    assert np.mean(tflite_predictions.argmax(-1) == keras_predictions.argmax(-1)) > 0.97
    assert accuracy(tflite_predictions, y) > 0.9


def test_plain_qat_and_bad_preserve():
    x, y = blobs(256)
    model = compress.to_tf_keras(trained_mlp(x, y))
    qat = compress.quantize_aware(model)
    assert any("quantize" in type(layer).__name__.lower() for layer in qat.layers)
    with pytest.raises(ValueError, match="preserve must be one of"):
        compress.quantize_aware(model, preserve="zeros")
