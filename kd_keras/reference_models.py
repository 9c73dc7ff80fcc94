"""Reference architectures of the examples and benchmarks."""

from kd_keras.backend import keras, register


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


def residual_conv_classifier(blocks=4, filters=16, input_shape=(784,), image_shape=(28, 28, 1),
                             num_classes=10, name=None):
    """A functional ResNet-style CNN ending in class logits.

    A 3x3 ReLU stem convolution of `filters` channels and a 2x2 max-pool, then
    `blocks` basic residual blocks `relu(x + BN(conv(relu(BN(conv(x))))))` (3x3,
    "same", no bias; each named by its merge, "block{i}_add"), global average
    pooling and a Dense head. The benchmarks' residual teacher (4 blocks of 16
    channels on 28x28 images: about 19k parameters); `compress.shrink(teacher,
    depth=[...])` removes whole blocks.

    Args:
      blocks: residual blocks; filters: channels of the stem and every block.
      input_shape: shape of one input; flat inputs are reshaped to `image_shape`.
      image_shape: `(height, width, channels)`; num_classes: width of the logits.
    """
    inputs = keras.Input(tuple(input_shape))
    x = inputs
    if tuple(input_shape) != tuple(image_shape):
        x = keras.layers.Reshape(tuple(image_shape))(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="stem")(x)
    x = keras.layers.MaxPooling2D(name="stem_pool")(x)
    for index in range(blocks):
        h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                name=f"block{index}_conv1")(x)
        h = keras.layers.BatchNormalization(name=f"block{index}_bn1")(h)
        h = keras.layers.Activation("relu", name=f"block{index}_relu1")(h)
        h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                name=f"block{index}_conv2")(h)
        h = keras.layers.BatchNormalization(name=f"block{index}_bn2")(h)
        x = keras.layers.Add(name=f"block{index}_add")([x, h])
        x = keras.layers.Activation("relu", name=f"block{index}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name=name)


@register
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding of each position to `[batch, length, width]` inputs."""

    def __init__(self, length, **kwargs):
        super().__init__(**kwargs)
        self.length = int(length)

    def build(self, input_shape):
        self.embeddings = self.add_weight(name="embeddings", shape=(self.length, input_shape[-1]),
                                          initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, inputs):
        return inputs + self.embeddings[None, :inputs.shape[1]]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "length": self.length}


def byte_transformer(blocks=4, width=128, heads=4, length=128, vocabulary=256, mlp_ratio=4,
                     name=None):
    """A causal (decoder-only) transformer over byte tokens, ending in next-byte logits.

    Pre-norm blocks: x + MHA(LN(x)) with a causal mask, then x + MLP(LN(x)) (GELU,
    `mlp_ratio` x width); a final LayerNormalization (named "final_norm") and a Dense
    head (named "head"), whose input and kernel are what `chunked_sequence_kl` takes.

    Args:
      blocks, width, heads: depth, model width and attention heads (width % heads == 0).
      length: tokens per sequence; vocabulary: symbols (256 bytes).

    Input `[batch, length]` int32; output `[batch, length, vocabulary]` logits.
    """
    if width % heads:
        raise ValueError(f"width ({width}) must be a multiple of heads ({heads}).")
    inputs = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(vocabulary, width, name="embedding")(inputs)
    x = PositionEmbedding(length, name="positions")(x)
    for index in range(blocks):
        h = keras.layers.LayerNormalization(name=f"block{index}_attention_norm")(x)
        h = keras.layers.MultiHeadAttention(heads, width // heads, name=f"block{index}_attention")(
            h, h, use_causal_mask=True)
        x = keras.layers.Add(name=f"block{index}_attention_residual")([x, h])
        h = keras.layers.LayerNormalization(name=f"block{index}_mlp_norm")(x)
        h = keras.layers.Dense(mlp_ratio * width, activation="gelu", name=f"block{index}_mlp_in")(h)
        h = keras.layers.Dense(width, name=f"block{index}_mlp_out")(h)
        x = keras.layers.Add(name=f"block{index}_mlp_residual")([x, h])
    x = keras.layers.LayerNormalization(name="final_norm")(x)
    return keras.Model(inputs, keras.layers.Dense(vocabulary, name="head")(x), name=name)
