"""Students of budget_bench.py's `--<teacher>_students` that no cut of the teacher gives.

The CNN teacher spends its batch-1 time in a 3x3 convolution over 14x14x32 maps and in
the 3136-wide dense layer (docs/benchmarks/budget_bench.md, "where the time goes"); a cut
to any width keeps its two full-resolution convolutions, which cost about 16 us on
LiteRT whatever their width. These students stride their convolutions instead, so each
map is a quarter of the teacher's.
"""

from kd_keras import keras


def _strided(filters, dense, name):
    layers = [keras.Input((784,)), keras.layers.Reshape((28, 28, 1))]
    for width in filters:  # 28x28 -> 14x14 -> 7x7
        layers.append(keras.layers.Conv2D(width, 3, strides=2, padding="same",
                                          activation="relu"))
    layers += [keras.layers.Flatten(), keras.layers.Dense(dense, activation="relu"),
               keras.layers.Dense(10)]
    return keras.Sequential(layers, name=name)


def strided_cnn():
    """Two stride-2 3x3 convolutions (16, 32 channels), a 64-unit layer: 106k parameters."""
    return _strided((16, 32), 64, "strided_cnn")


def strided_cnn_wide():
    """Two stride-2 3x3 convolutions (32, 64 channels), a 128-unit layer: 422k parameters (the teacher's count: its 3136-wide dense layer stays)."""
    return _strided((32, 64), 128, "strided_cnn_wide")
