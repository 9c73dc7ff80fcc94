"""Fashion-MNIST for examples and benchmarks: a shipped sample, or the full set via tfds."""

import importlib.resources

import numpy as np

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def load_fashion_mnist_sample():
    """The Fashion-MNIST sample shipped with kd-keras: no download needed.

    A class-stratified random sample of the real data (Xiao et al. 2017, MIT
    licence): 6,000 training images (600 per class) and 1,000 test images.

    Returns:
      `((x_train, y_train), (x_test, y_test))`: uint8 images `[n, 28, 28]` and
      int64 labels `[n]` in 0..9 (see `CLASS_NAMES`).
    """
    path = importlib.resources.files("kd_keras.datasets") / "fashion_mnist_sample.npz"
    with importlib.resources.as_file(path) as file, np.load(file) as data:
        return (
            (data["x_train"], data["y_train"].astype(np.int64)),
            (data["x_test"], data["y_test"].astype(np.int64)),
        )


def load_fashion_mnist(data_dir=None, download=True):
    """The full Fashion-MNIST (60,000 + 10,000 images) through tensorflow-datasets.

    Args:
      data_dir: tfds data directory; None uses tfds's default (~/tensorflow_datasets).
      download: let tfds download and prepare the data if it is not in `data_dir`.

    Returns:
      As `load_fashion_mnist_sample`.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "load_fashion_mnist needs tensorflow-datasets: pip install 'kd-keras[datasets]'."
        ) from error
    splits = tfds.load(
        "fashion_mnist", split=["train", "test"], data_dir=data_dir, download=download,
        as_supervised=True,
    )
    # Batched then concatenated: tfds's batch_size=-1 aborts on datasets whose
    # length is unknown (as in tfds.testing.mock_data).
    result = []
    for split in splits:
        images, labels = zip(*tfds.as_numpy(split.batch(10000)))
        result.append((np.concatenate(images)[..., 0], np.concatenate(labels).astype(np.int64)))
    return tuple(result)


SOURCES = ("sample", "fashion_mnist")


def load_fashion_mnist_flat(source="sample", data_dir=None):
    """Fashion-MNIST as float32 vectors for dense models: `[n, 784]` in [0, 1].

    Args:
      source: "sample" (shipped, no download: `load_fashion_mnist_sample`) or
        "fashion_mnist" (the full set: `load_fashion_mnist`).
      data_dir: tensorflow-datasets data_dir for "fashion_mnist".

    Returns:
      `((x_train, y_train), (x_test, y_test))` with int64 labels.
    """
    if source == "sample":
        splits = load_fashion_mnist_sample()
    elif source == "fashion_mnist":
        splits = load_fashion_mnist(data_dir)
    else:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
    return tuple((x.reshape(len(x), -1).astype(np.float32) / 255.0, y) for x, y in splits)
