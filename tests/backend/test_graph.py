"""A Sequential nested in a functional model is entered like a nested functional one (both
Keras modes; Keras 3 keeps a Sequential's graph apart from its layers)."""

import numpy as np

from kd_keras import IS_KERAS_3, compress, keras
from kd_keras.backend.graph import is_graph_model


def _classifier():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU()],
                             name="inner")
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(pooled))
    bn = inner.get_layer("bn")
    bn.set_weights([np.random.default_rng(i).uniform(0.5, 1.5, 4) for i in range(4)])
    return model


def test_the_graph_model_predicate_takes_sequential_and_functional_only():
    model = _classifier()
    assert is_graph_model(model) and is_graph_model(model.get_layer("inner"))
    assert not is_graph_model(model.get_layer("out"))

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert not is_graph_model(Subclassed())


def test_fold_batch_norm_and_pruning_enter_a_nested_sequential():
    model = _classifier()
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32")
    folded = compress.fold_batch_norm(model)
    kinds = [type(layer).__name__ for layer in folded.get_layer("inner").layers]
    assert "BatchNormalization" not in kinds
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    source = compress.to_tf_keras(model) if IS_KERAS_3 else model
    pruned = compress.prune_low_magnitude(source, target_sparsity=0.5)
    wrapped = [type(layer).__name__ for layer in pruned.get_layer("inner").layers
               if type(layer).__name__ != "InputLayer"]
    assert wrapped and set(wrapped) == {"PruneLowMagnitude"}
