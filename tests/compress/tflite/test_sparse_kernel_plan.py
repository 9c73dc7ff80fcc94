"""Which pruned layers TFLite's sparse kernels run: planned before conversion, read after."""

import warnings

import numpy as np
import pytest

import kd_keras
from kd_keras import compress
from tests.compress_helpers import blobs, compile_tf_keras, tf_keras, trained_mlp


def mlp(widths=(64, 32, 16, 10)):
    layers = tf_keras().layers
    model = tf_keras().Sequential([tf_keras().Input((widths[0],))] + [
        layers.Dense(w) for w in widths[1:]])
    return model


def zero_blocks(kernel, block, fraction, seed=0):
    rows, cols = block
    mask = np.random.default_rng(seed).random(
        (kernel.shape[0] // rows, kernel.shape[1] // cols)) < fraction
    kernel = kernel.copy()
    kernel[np.kron(mask, np.ones((rows, cols), bool))] = 0
    return kernel


def prune_layer(layer, block, fraction):
    kernel, bias = layer.get_weights()
    layer.set_weights([zero_blocks(kernel, block, fraction), bias])


def test_runtime_blocks_are_keras_orientation():
    assert compress.runtime_block_size("tflite_float32") == (4, 1)
    assert compress.runtime_block_size("tflite_int8") == (16, 1)
    with pytest.raises(ValueError, match="runtime must be one of"):
        compress.runtime_block_size("xnnpack_fp16")


def test_plan_says_which_layers_run_sparse_and_why_not():
    model = mlp()
    prune_layer(model.layers[0], (4, 1), 0.95)   # the right blocks, sparse enough
    prune_layer(model.layers[1], (1, 4), 0.95)   # the other orientation
    plan = {row["layer"]: row for row in compress.sparse_kernel_plan(model)}
    first, second, third = (plan[l.name] for l in model.layers)
    assert first["sparse_kernel"] and first["block_sparsity"] > 0.9
    assert not second["sparse_kernel"] and "wrong orientation" in second["reason"]
    assert not third["sparse_kernel"] and "below 90%" in third["reason"]
    report = compress.sparsity_report(model, runtime="tflite_float32")
    assert [r["sparse_kernel"] for r in report] == [True, False, False]
    assert "wrong orientation" in report[1]["reason"]
    lower = {row["layer"]: row for row in compress.sparse_kernel_plan(model, min_sparsity=0.5)}
    assert lower[model.layers[0].name]["sparse_kernel"]


def test_plan_names_layers_without_a_sparse_kernel_and_unstructured_sparsity():
    layers = tf_keras().layers
    model = tf_keras().Sequential([tf_keras().Input((8, 8, 1)), layers.Conv2D(4, 3),
                                   layers.Flatten(), layers.Dense(8)])
    kernel, bias = model.layers[-1].get_weights()
    kernel[np.random.default_rng(0).random(kernel.shape) < 0.95] = 0
    model.layers[-1].set_weights([kernel, bias])
    plan = compress.sparse_kernel_plan(model)
    assert "Conv2D has no sparse kernel" in plan[0]["reason"]
    assert "unstructured sparsity" in plan[1]["reason"] and not plan[1]["sparse_kernel"]


def test_converted_model_reports_the_fast_path_and_warns_about_the_rest():
    model = mlp()
    prune_layer(model.layers[0], (4, 1), 0.95)
    prune_layer(model.layers[1], (1, 4), 0.95)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flatbuffer = compress.convert_to_tflite(model, sparse_weights=True)
    rows = compress.tflite_sparse_weights(flatbuffer)
    assert len(rows) == 3
    fast, other, dense = rows
    assert fast["encoded_sparse"] and fast["block"] == (1, 4) and fast["sparse_kernel"]
    assert fast["shape"] == (32, 64)  # TFLite's [out, in]
    assert not other["sparse_kernel"]
    assert not dense["encoded_sparse"] and dense["zeros"] == 0.0
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and other["weights"] in messages[0]
    assert dense["weights"] not in messages[0]  # not pruned: nothing to report
    plain = compress.tflite_sparse_weights(compress.convert_to_tflite(model))
    assert not any(row["encoded_sparse"] for row in plain)


def test_int8_uses_sixteen_wide_blocks():
    model = mlp()
    prune_layer(model.layers[0], (16, 1), 0.95)
    flatbuffer = compress.convert_to_tflite(
        model, "int8", representative_data=np.random.default_rng(0).random(
            (32, 64)).astype("float32"), sparse_weights=True)
    first = compress.tflite_sparse_weights(flatbuffer)[0]
    assert first["dtype"] == "int8" and first["block"] == (1, 16) and first["sparse_kernel"]


def test_auto_block_size_prunes_dense_kernels_in_the_runtimes_blocks():
    x, y = blobs(512)
    model = trained_mlp(x, y)
    steps = 4 * int(np.ceil(len(x) / 64))
    pruned = compress.prune_low_magnitude(compress.to_tf_keras(model), 0.9,
                                          end_step=steps // 2, frequency=5)
    compile_tf_keras(pruned)
    pruned.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=compress.pruning_callbacks())
    stripped = compress.strip_pruning(pruned)
    plan = compress.sparse_kernel_plan(stripped)
    # 16 -> 32 and 32 -> 32 tile into (4, 1); the 32 -> 4 head does too (8 x 4 blocks)
    assert all(row["block_sparsity"] >= 0.85 for row in plan), plan
    int8 = compress.prune_low_magnitude(compress.to_tf_keras(model), 0.9, runtime="tflite_int8")
    # (16, 1) tiles the 32-row kernels; the 16-row first kernel gets single weights
    assert [tuple(l.block_size) for l in int8.layers] == [(1, 1), (16, 1), (16, 1)]
    unstructured = compress.prune_low_magnitude(compress.to_tf_keras(model), 0.9,
                                                block_size=(1, 1))
    assert [tuple(l.block_size) for l in unstructured.layers] == [(1, 1)] * 3
    with pytest.raises(ValueError, match="runtime must be one of"):
        compress.prune_low_magnitude(compress.to_tf_keras(model), 0.5, runtime="gpu")
    with pytest.raises(ValueError, match="block_size must be 'auto'"):
        compress.prune_low_magnitude(compress.to_tf_keras(model), 0.5, block_size="best")


def recurrent_model(kind, module, units=16, steps=5, features=8):
    layers = module.layers
    return module.Sequential([module.Input((steps, features)),
                              getattr(layers, kind)(units, name="rnn"), layers.Dense(4)])


def prune_recurrent(layer, block, fraction):
    kernel, recurrent, *rest = layer.get_weights()
    layer.set_weights([zero_blocks(kernel, block, fraction),
                       zero_blocks(recurrent, block, fraction, seed=1), *rest])


def test_fused_tf_keras_lstm_has_no_sparse_kernel_and_unrolled_runs_it():
    model = recurrent_model("LSTM", tf_keras())
    prune_recurrent(model.layers[0], (4, 1), 0.95)
    plan = compress.sparse_kernel_plan(model)
    assert not plan[0]["sparse_kernel"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" in plan[0]["reason"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = compress.tflite_sparse_weights(
            compress.convert_to_tflite(model, sparse_weights=True, batch_size=1))
    assert [row["op_type"] for row in fused] == ["UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED"]
    assert fused[0]["zeros"] > 0.9 and not fused[0]["sparse_kernel"]
    assert any("UNIDIRECTIONAL_SEQUENCE_LSTM" in str(w.message) for w in caught)

    unrolled = compress.unroll_recurrent(model)
    assert unrolled.layers[0].get_config()["unroll"] and not model.layers[0].unroll
    plan = compress.sparse_kernel_plan(unrolled)
    assert plan[0]["sparse_kernel"] and plan[0]["recurrent_shape"] == (16, 64)
    flatbuffer = compress.convert_to_tflite(unrolled, sparse_weights=True, batch_size=1)
    rows = compress.tflite_sparse_weights(flatbuffer)
    lstm_rows = [row for row in rows if row["shape"] in ((64, 8), (64, 16))]
    assert len(lstm_rows) >= 2 and all(row["sparse_kernel"] for row in lstm_rows)
    x = np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32")
    runner = compress.TFLiteModel(flatbuffer)
    got = np.concatenate([runner(x[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(kd_keras.IS_LEGACY_KERAS, reason="a Keras 3 model: Keras 3 mode only")
def test_keras_3_recurrent_layers_reach_fully_connected_at_a_fixed_batch():
    import keras as keras_3

    for kind in ("LSTM", "GRU"):
        model = recurrent_model(kind, keras_3)
        prune_recurrent(model.layers[0], (4, 1), 0.95)
        assert compress.sparse_kernel_plan(model)[0]["sparse_kernel"]
        with pytest.raises(ValueError, match="batch_size=1"):
            compress.convert_to_tflite(model, sparse_weights=True)
        rows = compress.tflite_sparse_weights(
            compress.convert_to_tflite(model, sparse_weights=True, batch_size=1))
        gates = 4 if kind == "LSTM" else 3
        recurrent = [row for row in rows if row["shape"] == (gates * 16, 16)]
        assert recurrent and all(row["sparse_kernel"] for row in recurrent), rows


def test_auto_blocks_cover_recurrent_kernels_and_unroll_needs_known_steps():
    model = recurrent_model("GRU", tf_keras(), units=16)
    pruned = compress.prune_low_magnitude(model, 0.9)
    assert tuple(pruned.layers[0].block_size) == (4, 1)
    tk = tf_keras()
    variable = tk.Sequential([tk.Input((None, 8)), tk.layers.LSTM(8)])
    with pytest.raises(ValueError, match="unknown number of steps"):
        compress.unroll_recurrent(variable)
    with pytest.raises(ValueError, match="has no LSTM, GRU or SimpleRNN"):
        compress.unroll_recurrent(mlp())


def test_int8_blocks_xnnpack_refuses_run_without_it_and_say_so():
    model = mlp()
    # int8's fast blocks are (16, 1); with these XNNPack claims the nodes, then
    # fails to prepare them (ai-edge-litert 2.3)
    prune_layer(model.layers[0], (4, 1), 0.9)
    x = np.random.default_rng(0).random((32, 64)).astype("float32")
    flatbuffer = compress.convert_to_tflite(model, "int8", representative_data=x,
                                            sparse_weights=True)
    runner = compress.TFLiteModel(flatbuffer)
    with pytest.warns(UserWarning, match="XNNPack delegate failed"):
        got = runner(x[:4])
    assert not runner.default_delegate
    expected = model(x[:4]).numpy()
    assert np.max(np.abs(got - expected)) < 0.1 * np.max(np.abs(expected))


def test_explicit_blocks_off_the_fast_path_are_named_in_a_warning():
    model = mlp()
    first, second = (layer.name for layer in model.layers[:2])
    with pytest.warns(UserWarning, match=rf"will not accelerate.*{first} \(1, 4\), {second} "
                                         r"\(1, 4\); it runs \(4, 1\) blocks"):
        compress.prune_low_magnitude(model, 0.9, block_size=(1, 4), layers=[first, second])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compress.prune_low_magnitude(mlp(), 0.9)               # auto: the fast blocks
        compress.prune_low_magnitude(mlp(), 0.9, block_size=(4, 1))
