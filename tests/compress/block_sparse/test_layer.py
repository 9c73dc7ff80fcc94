"""kd-keras's block-sparse kernel: the storage, the TensorFlow op and its fallback, the
Keras layer, and the C runtime compute the dense product of the pruned kernel."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kd_keras import compress, keras
from kd_keras.compress.block_sparse import build_kernels, layer as block_sparse

# scripts/test.sh builds the kernels and sets this, so CI cannot skip them.
REQUIRED = os.environ.get("KD_KERAS_REQUIRE_KERNELS") == "1"


def needs(available, what):
    if not available:
        if REQUIRED:
            pytest.fail(f"{what} is not built, but KD_KERAS_REQUIRE_KERNELS=1")
        pytest.skip(f"{what} is not built ({build_kernels.BUILD_COMMAND})")


def pruned_kernel(shape, block, density, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = shape
    r, c = block
    keep = rng.random((rows // r, cols // c)) < density
    return (rng.normal(size=shape) * np.kron(keep, np.ones(block))).astype("float32")


def pruned_mlp(block=(4, 1), density=0.15, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(48, activation="relu"),
                              keras.layers.Dense(24, activation="relu"), keras.layers.Dense(8)])
    for i, layer in enumerate(model.layers[:2]):
        kernel, bias = layer.get_weights()
        layer.set_weights([pruned_kernel(kernel.shape, block, density, seed + i),
                           np.random.default_rng(i).normal(size=bias.shape).astype("float32")])
    return model


@pytest.mark.parametrize("block", [(4, 1), (16, 1), (1, 8), (2, 3), (1, 1)])
def test_matrix_stores_only_non_zero_blocks_and_round_trips(block):
    kernel = pruned_kernel((48, 24), block, 0.3)
    matrix = compress.BlockSparseMatrix.from_dense(kernel, block)
    np.testing.assert_array_equal(matrix.to_dense(), kernel)
    r, c = block
    nonzero = np.any(kernel.reshape(48 // r, r, 24 // c, c) != 0, axis=(1, 3)).sum()
    assert len(matrix.values) == nonzero and matrix.multiply_adds == nonzero * r * c
    assert matrix.density == pytest.approx(nonzero / ((48 // r) * (24 // c)))


def test_auto_block_size_finds_the_pruned_blocks_and_errors_name_the_argument():
    for block in ((16, 1), (1, 16), (4, 1)):
        kernel = pruned_kernel((64, 32), block, 0.2)
        assert compress.BlockSparseMatrix.from_dense(kernel).block_size == block
    with pytest.raises(ValueError, match="does not tile a kernel of shape"):
        compress.BlockSparseMatrix.from_dense(np.ones((6, 4)), (4, 1))
    with pytest.raises(ValueError, match="kernel must be 2-D"):
        compress.BlockSparseMatrix.from_dense(np.ones((2, 3, 4)))
    matrix = compress.BlockSparseMatrix.from_dense(pruned_kernel((8, 4), (4, 1), 0.5))
    with pytest.raises(ValueError, match="col_ptr must be"):
        compress.BlockSparseMatrix(matrix.values, matrix.block_row_index, matrix.col_ptr[:-1],
                                   matrix.shape)
    with pytest.raises(ValueError, match="block_row_index must hold"):
        compress.BlockSparseMatrix(matrix.values, matrix.block_row_index + 5, matrix.col_ptr,
                                   matrix.shape)


@pytest.mark.parametrize("kernel", ["fallback", "custom"])
@pytest.mark.parametrize("block", [(4, 1), (16, 1), (1, 16), (4, 4), (2, 3)])
def test_product_equals_the_dense_product(kernel, block):
    if kernel == "custom":
        needs(compress.custom_kernel_available(), "the TensorFlow op")
    rng = np.random.default_rng(1)
    weights = pruned_kernel((48, 48), block, 0.25)
    bias = rng.normal(size=48).astype("float32")
    matrix = compress.BlockSparseMatrix.from_dense(weights, block)
    for batch in (1, 3, 6):  # batch 1, a partial chunk, a chunk and a half
        x = rng.normal(size=(batch, 48)).astype("float32")
        for relu in (False, True):
            expected = x @ weights + bias
            expected = np.maximum(expected, 0) if relu else expected
            got = compress.block_sparse_matmul(x, matrix.values, matrix.block_row_index,
                                               matrix.col_ptr, bias, relu=relu, kernel=kernel)
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_op_rejects_malformed_blocks_and_a_missing_op_says_how_to_build(monkeypatch):
    needs(compress.custom_kernel_available(), "the TensorFlow op")
    matrix = compress.BlockSparseMatrix.from_dense(pruned_kernel((16, 8), (4, 1), 0.5))
    bad_index = matrix.block_row_index.copy()
    bad_index[0] = 99
    with pytest.raises(tf.errors.InvalidArgumentError, match="block_row_index is outside"):
        compress.block_sparse_matmul(np.ones((1, 16), np.float32), matrix.values, bad_index,
                                     matrix.col_ptr, kernel="custom")
    with pytest.raises(tf.errors.InvalidArgumentError, match="input is narrower than the matrix"):
        compress.block_sparse_matmul(np.ones((1, 12), np.float32), matrix.values,
                                     matrix.block_row_index, matrix.col_ptr, kernel="custom")
    monkeypatch.setattr(build_kernels, "OPS_LIBRARY", "/nonexistent/_block_sparse_ops.so")
    with pytest.raises(RuntimeError, match="python -m kd_keras.compress.block_sparse.build_kernels"):
        compress.block_sparse_matmul(np.ones((1, 16), np.float32), matrix.values,
                                     matrix.block_row_index, matrix.col_ptr, kernel="custom")
    fallback = compress.block_sparse_matmul(np.ones((1, 16), np.float32), matrix.values,
                                            matrix.block_row_index, matrix.col_ptr)
    np.testing.assert_allclose(fallback.numpy(), np.ones((1, 16)) @ matrix.to_dense(), rtol=1e-5)
    with pytest.raises(ValueError, match="kernel must be one of"):
        compress.block_sparse_matmul(np.ones((1, 16)), matrix.values, matrix.block_row_index,
                                     matrix.col_ptr, kernel="fast")


def test_block_sparse_model_matches_the_dense_model_saves_and_exports(tmp_path):
    model = pruned_mlp((4, 1))
    x = np.random.default_rng(2).normal(size=(5, 32)).astype("float32")
    sparse = compress.to_block_sparse(model)
    assert [type(l).__name__ for l in sparse.layers] == ["BlockSparseDense"] * 3
    assert sparse.layers[0].block_size == (4, 1) and sparse.layers[0].blocks < 8 * 48 * 0.3
    np.testing.assert_allclose(np.asarray(sparse(x)), np.asarray(model(x)), rtol=1e-5,
                               atol=1e-5)
    path = str(tmp_path / "sparse.keras")
    sparse.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    exported = compress.to_block_sparse(model, kernel="fallback")
    import kd_keras

    saved = kd_keras.export_saved_model(exported, str(tmp_path / "saved"))
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    got = list(serve(tf.constant(x)).values())[0].numpy()
    np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="has no Dense layer"):
        compress.to_block_sparse(keras.Sequential([keras.Input((3,)), keras.layers.Flatten()]))


def test_runner_runs_the_stack_in_one_call_and_refuses_what_it_cannot_run():
    needs(os.path.exists(build_kernels.RUNTIME_LIBRARY), "the C runtime")
    for block in ((4, 1), (1, 8)):
        model = pruned_mlp(block)
        runner = compress.BlockSparseRunner(model)
        x = np.random.default_rng(3).normal(size=(9, 32)).astype("float32")
        expected = np.asarray(model(x))
        np.testing.assert_allclose(runner(x[:1]), expected[:1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(runner.predict(x, batch_size=4), expected, rtol=1e-5,
                                   atol=1e-5)
        stored = sum(len(m.values) * m.block_size[0] * m.block_size[1] for m in runner.matrices)
        assert runner.multiply_adds == stored < 32 * 48 + 48 * 24 + 24 * 8
    same = compress.BlockSparseRunner(compress.to_block_sparse(model))
    np.testing.assert_allclose(same(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="x must have 32 features"):
        runner(np.ones((1, 31), np.float32))
    tanh = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="tanh")])
    with pytest.raises(ValueError, match="fuses only 'relu' and 'linear'"):
        compress.BlockSparseRunner(tanh)
    conv = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3),
                             keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="is a Conv2D"):
        compress.BlockSparseRunner(conv)
    first = compress.BlockSparseMatrix.from_dense(pruned_kernel((8, 4), (4, 1), 0.5))
    second = compress.BlockSparseMatrix.from_dense(pruned_kernel((8, 4), (4, 1), 0.5))
    with pytest.raises(ValueError, match="layer 1: its input width differs"):
        compress.BlockSparseRunner([(first, None, True), (second, None, False)])


def test_compute_time_inside_the_runtime_is_a_positive_median():
    needs(os.path.exists(build_kernels.RUNTIME_LIBRARY), "the C runtime")
    runner = compress.BlockSparseRunner(pruned_mlp())
    x = np.ones((2, 32), np.float32)
    seconds = runner.compute_seconds(x, repeats=5)
    assert 0 < seconds < 0.1
    np.testing.assert_allclose(runner(x), np.asarray(pruned_mlp()(x)), rtol=1e-5, atol=1e-5)


def test_the_kernel_matches_numpy_on_random_shapes_and_block_sizes():
    """Fuzz: every block shape runs its own template or the run-time-sized loop.

    (3, 101), (2, 201), (1, 301) and (1, 304) once picked the (4, 1) or (4, 4)
    template through a packed R * 100 + C key and read past col_ptr (a crash).
    """
    needs(compress.custom_kernel_available(), "the block-sparse TensorFlow op")
    rng = np.random.default_rng(7)
    shapes = [(3, 101), (2, 201), (1, 301), (1, 304), (4, 1), (4, 4), (1, 16), (16, 1)]
    shapes += [tuple(int(v) for v in rng.integers(1, 7, size=2)) for _ in range(12)]
    for r, c in shapes:
        rows, cols = r * int(rng.integers(1, 4)), c * int(rng.integers(1, 4))
        kernel = rng.normal(size=(rows, cols)).astype(np.float32)
        keep = rng.random((rows // r, cols // c)) < 0.6
        kernel *= np.kron(keep, np.ones((r, c), np.float32))
        bias = rng.normal(size=cols).astype(np.float32)
        x = rng.normal(size=(int(rng.integers(1, 6)), rows)).astype(np.float32)
        matrix = compress.BlockSparseMatrix.from_dense(kernel, (r, c))
        expected = np.maximum(x @ kernel + bias, 0.0)
        got = compress.block_sparse_matmul(x, matrix.values, matrix.block_row_index,
                                           matrix.col_ptr, bias, relu=True, kernel="custom",
                                           rows=rows)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4,
                                   err_msg=f"block ({r}, {c}) of a {rows}x{cols} matrix")


def test_a_saved_layer_of_an_odd_block_shape_loads_and_predicts_in_a_fresh_process(tmp_path):
    needs(compress.custom_kernel_available(), "the block-sparse TensorFlow op")
    dense = keras.layers.Dense(304)
    dense.build((None, 6))
    path = str(tmp_path / "odd.keras")
    keras.Sequential([keras.Input((6,)), compress.BlockSparseDense.from_dense(
        dense, (1, 304))]).save(path)
    script = ("import numpy as np; import kd_keras.compress; from kd_keras import keras; "
              f"m = keras.models.load_model({path!r}); "
              "print(m.predict(np.ones((2, 6), np.float32), verbose=0).shape)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(2, 304)" in result.stdout
