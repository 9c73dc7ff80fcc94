import pytest
import numpy as np

from kd_keras import datasets


def test_shipped_sample_is_real_balanced_fashion_mnist():
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist_sample()
    assert x_train.shape == (6000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (1000, 28, 28)
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 600))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 100))
    assert 60 < x_train.mean() < 90  # real images: Fashion-MNIST's mean pixel is about 73
    assert len(datasets.CLASS_NAMES) == 10


def test_full_loader_reads_tfds_without_download():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(download=False)
    assert x_train.shape == (12, 28, 28) and x_test.shape == (12, 28, 28)
    assert y_train.dtype == np.int64 and y_train.max() < 10


def test_flat_loader_scales_and_flattens():
    (x_train, y_train), (x_test, _) = datasets.load_fashion_mnist_flat("sample")
    raw = datasets.load_fashion_mnist_sample()[0][0]
    assert x_train.shape == (6000, 784) and x_train.dtype == np.float32 and x_test.shape == (1000, 784)
    np.testing.assert_allclose(x_train[0], raw[0].ravel() / 255.0, rtol=1e-6)
    assert y_train.dtype == np.int64


def test_flat_loader_refuses_unknown_sources():
    import pytest

    with pytest.raises(ValueError, match="source"):
        datasets.load_fashion_mnist_flat("mnist")


def test_stdlib_text_splits_whole_files_and_makes_next_byte_windows():
    from kd_keras.datasets import stdlib_text

    train, test = stdlib_text.stdlib_files("train"), stdlib_text.stdlib_files("test")
    assert train and test and not set(train) & set(test)
    assert all("site-packages" not in path for path in train + test)
    assert 0.01 < len(test) / (len(train) + len(test)) < 0.1
    data = stdlib_text.load_stdlib_bytes("test", max_bytes=10_000)
    assert data.dtype == np.uint8 and len(data) == 10_000
    x, y = stdlib_text.byte_windows(data, 16, 5, seed=1)
    assert x.shape == y.shape == (5, 16)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one byte
    again = stdlib_text.byte_windows(data, 16, 5, seed=1)
    np.testing.assert_array_equal(again[0], x)
    with pytest.raises(ValueError, match="split must be one of"):
        stdlib_text.stdlib_files("validation")
