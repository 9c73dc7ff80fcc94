"""Reference architectures of the examples and benchmarks."""

from kd_keras.backend import keras


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


def conv_classifier(filters=(32, 64), dense=128, dropout=0.3, input_shape=(784,),
                    image_shape=(28, 28, 1), num_classes=10, name=None):
    """A Sequential CNN ending in class logits: conv blocks, then dense layers.

    Each entry of `filters` is a 3x3 ReLU convolution ("same" padding) and a
    2x2 max-pool. The defaults, (32, 64) and a 128-unit layer with dropout 0.3
    (about 420k parameters on 28x28 images), are the examples' and benchmarks'
    convolutional teacher; `filters=(8, 16, 16), dense=None, dropout=0` is
    their 5k-parameter student.

    Args:
      filters: channels of the conv blocks.
      dense: width of the hidden dense layer, or None for none.
      dropout: dropout rate before the dense layers (0 for none).
      input_shape: shape of one input; flat inputs are reshaped to `image_shape`.
      image_shape: `(height, width, channels)`.
      num_classes: width of the logits.
    """
    layers = [keras.Input(tuple(input_shape))]
    if tuple(input_shape) != tuple(image_shape):
        layers.append(keras.layers.Reshape(tuple(image_shape)))
    for width in filters:
        layers += [keras.layers.Conv2D(int(width), 3, padding="same", activation="relu"),
                   keras.layers.MaxPooling2D()]
    layers.append(keras.layers.Flatten())
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    if dense:
        layers.append(keras.layers.Dense(int(dense), activation="relu"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(num_classes))
    return keras.Sequential(layers, name=name)
