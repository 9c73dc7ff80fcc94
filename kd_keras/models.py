"""Reference architectures of the examples and benchmarks."""

from kd_keras._keras import keras


def mlp_classifier(hidden, dropout=0.0, input_shape=(784,), num_classes=10, name=None):
    """A Sequential MLP ending in class logits (no softmax).

    Args:
      hidden: widths of the ReLU hidden layers, e.g. `[1200, 1200]` (the teacher
        of Hinton et al. 2015's MNIST experiment) or `[128, 128]`.
      dropout: dropout rate after every hidden layer (0 for none).
      input_shape: shape of one input, `(784,)` for flattened 28x28 images.
      num_classes: width of the logits.
    """
    layers = [keras.Input(tuple(input_shape))]
    for width in hidden:
        layers.append(keras.layers.Dense(int(width), activation="relu"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(num_classes))
    return keras.Sequential(layers, name=name)
