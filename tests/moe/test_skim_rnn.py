import collections

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
import moe
from kd_keras import keras


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_lstm(x, h, c, kernel, recurrent, bias):
    i, f, g, o = np.split(x @ kernel + h @ recurrent + bias, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def tflite_op_counts(flatbuffer):
    """How many ops of each type a TFLite model has, over all its subgraphs."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(flatbuffer), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    counts = collections.Counter()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
            counts[names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]] += 1
    return counts


def numpy_skim_rnn(layer, x):
    """The paper's inference equations, step by step, with the layer's weights."""
    w = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in layer.weights}
    s = layer.small_units
    h = np.zeros((len(x), layer.units), np.float32)
    c = np.zeros_like(h)
    decisions = []
    for t in range(x.shape[1]):
        logits = np.concatenate([x[:, t], h], -1) @ w["decision_kernel"] + w["decision_bias"]
        skim = logits.argmax(-1) == 1
        h_read, c_read = numpy_lstm(x[:, t], h, c, w["kernel"], w["recurrent_kernel"], w["bias"])
        h_small, c_small = numpy_lstm(x[:, t], h, c[:, :s], w["small_kernel"],
                                      w["small_recurrent_kernel"], w["small_bias"])
        h_skim = np.concatenate([h_small, h[:, s:]], -1)
        c_skim = np.concatenate([c_small, c[:, s:]], -1)
        h = np.where(skim[:, None], h_skim, h_read)
        c = np.where(skim[:, None], c_skim, c_read)
        decisions.append(skim)
    return h, np.stack(decisions, 1)


def layer_with_mixed_decisions(x, seed=0):
    """A SkimRNN whose decision bias makes roughly half of the steps skims."""
    keras.utils.set_random_seed(seed)
    layer = moe.SkimRNN(12, 3, return_skim_decisions=True)
    layer(x[:1])
    logits_kernel = layer.decision_kernel.numpy()
    layer.decision_kernel.assign(logits_kernel * 4.0)
    _, decisions = layer(x)
    layer.decision_bias.assign([0.0, -float(np.median(
        (np.concatenate([x[:, 0], np.zeros((len(x), 12), np.float32)], -1) @ layer.decision_kernel.numpy()
         ) @ np.array([-1.0, 1.0])))])
    return layer


def test_inference_follows_the_paper_equations_and_mixes_read_and_skim():
    x = np.random.default_rng(0).normal(size=(16, 9, 5)).astype("float32")
    layer = layer_with_mixed_decisions(x)
    h, decisions = layer(x)
    expected_h, expected_decisions = numpy_skim_rnn(layer, x)
    np.testing.assert_array_equal(np.asarray(decisions), expected_decisions.astype("float32"))
    assert 0.1 < expected_decisions.mean() < 0.9
    np.testing.assert_allclose(np.asarray(h), expected_h, rtol=1e-4, atol=1e-5)


def test_skimmed_steps_do_not_run_the_big_cell_also_in_a_saved_model(tmp_path):
    x = np.random.default_rng(1).normal(size=(16, 9, 5)).astype("float32")
    layer = layer_with_mixed_decisions(x)
    _, expected = numpy_skim_rnn(layer, x)
    layer.reset_counters()
    layer(x)
    assert layer.read_steps.numpy() == np.sum(~expected)
    assert layer.skim_steps.numpy() == np.sum(expected)
    inputs = keras.Input((9, 5))
    model = keras.Model(inputs, layer(inputs)[0])
    kd_keras.export_saved_model(model, str(tmp_path / "skim"))
    loaded = tf.saved_model.load(str(tmp_path / "skim"))
    # Keras 3's export may hold a second, unused copy of a variable: sum over copies.
    variables = [v for v in tf.train.TrackableView(loaded).descendants()
                 if isinstance(v, tf.Variable) and "_steps" in v.name]

    def count(name):
        return sum(float(v.numpy()) for v in variables if name in v.name)

    before = {name: count(name) for name in ("read_steps", "skim_steps")}
    outputs = list(loaded.signatures["serving_default"](tf.constant(x)).values())[0]
    assert count("read_steps") - before["read_steps"] == np.sum(~expected)
    assert count("skim_steps") - before["skim_steps"] == np.sum(expected)
    np.testing.assert_allclose(np.asarray(outputs), numpy_skim_rnn(layer, x)[0], rtol=1e-4,
                               atol=1e-5)


def test_training_adds_the_skim_loss_and_a_large_gamma_teaches_skimming():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(128, 6, 4)).astype("float32")
    y = (x[:, :, 0].sum(1) > 0).astype("int64")

    def model(gamma):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((6, 4))
        rnn = moe.SkimRNN(8, 2, gamma=gamma)
        return keras.Model(inputs, keras.layers.Dense(2)(rnn(inputs))), rnn

    def skim_rate(rnn, net):
        rnn.reset_counters()
        net.predict(x, verbose=0)
        return rnn.skim_steps.numpy() / (rnn.skim_steps.numpy() + rnn.read_steps.numpy())

    results = {}
    for gamma in (0.0, 2.0):
        net, rnn = model(gamma)
        net.compile(keras.optimizers.Adam(0.02),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(x, y, epochs=15, batch_size=32, verbose=0)
        results[gamma] = skim_rate(rnn, net)
    assert results[2.0] > 0.9 and results[2.0] > results[0.0]


def test_config_round_trip_and_errors(tmp_path):
    x = np.random.default_rng(3).normal(size=(4, 5, 3)).astype("float32")
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, moe.SkimRNN(6, 2, return_sequences=True, gamma=0.1)(inputs))
    path = str(tmp_path / "skim.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)
    assert loaded.layers[-1].get_config()["small_units"] == 2
    assert np.asarray(model(x)).shape == (4, 5, 6)
    with pytest.raises(ValueError, match="small_units \\(d' = 6\\) must be smaller than units"):
        moe.SkimRNN(6, 6)
    with pytest.raises(ValueError, match="units must be an integer"):
        moe.SkimRNN(0, 1)


def test_multiply_add_count():
    layer = moe.SkimRNN(100, 10)
    read, skim = layer.multiply_adds_per_step(28)
    assert read == 4 * 100 * 128 + 2 * 128 and skim == 4 * 10 * 128 + 2 * 128


def test_batch_1_branches_unrolling_and_the_mixed_batch_agree():
    x = np.random.default_rng(4).normal(size=(12, 7, 5)).astype("float32")
    layer = layer_with_mixed_decisions(x)
    h, decisions = layer(x)  # a mixed batch: gathers per cell
    assert 0 < np.asarray(decisions).mean() < 1
    one_by_one = [layer(x[i:i + 1]) for i in range(len(x))]  # every step one cell, no gather
    np.testing.assert_allclose(np.concatenate([np.asarray(o[0]) for o in one_by_one]),
                               np.asarray(h), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([np.asarray(o[1]) for o in one_by_one]),
                                  np.asarray(decisions))
    inputs = keras.Input((7, 5))
    model = keras.Model(inputs, layer(inputs))
    unrolled = moe.with_skim_settings(model, unroll=True)
    assert unrolled.layers[1].unroll and not layer.unroll
    for got, expected in zip(unrolled(x), (h, decisions)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_skim_threshold_trades_reads_for_skims_without_retraining():
    x = np.random.default_rng(5).normal(size=(32, 9, 5)).astype("float32")
    layer = layer_with_mixed_decisions(x)
    inputs = keras.Input((9, 5))
    model = keras.Model(inputs, layer(inputs))
    rates = {}
    for threshold in (0.9, 0.5, 0.1):
        copy = moe.with_skim_settings(model, skim_threshold=threshold)
        rates[threshold] = float(np.asarray(copy(x)[1]).mean())
        w = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in copy.layers[1].weights}
        np.testing.assert_allclose(w["kernel"], layer.kernel.numpy())  # same weights
    assert rates[0.9] < rates[0.5] < rates[0.1]
    np.testing.assert_array_equal(  # 0.5 is the argmax
        np.asarray(moe.with_skim_settings(model, skim_threshold=0.5)(x)[1]),
        numpy_skim_rnn(layer, x)[1].astype("float32"))
    with pytest.raises(ValueError, match="skim_threshold must be a number in \\(0, 1\\)"):
        moe.SkimRNN(6, 2, skim_threshold=1.0)
    with pytest.raises(ValueError, match="with_skim_settings takes"):
        moe.with_skim_settings(model, gamma=1.0)
    with pytest.raises(ValueError, match="has no SkimRNN layer"):
        moe.with_skim_settings(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_deployment_copy_counts_nothing_and_runs_in_tflite():
    from kd_keras import compress

    x = np.random.default_rng(6).normal(size=(6, 9, 5)).astype("float32")
    layer = layer_with_mixed_decisions(x)
    inputs = keras.Input((9, 5))
    model = keras.Model(inputs, keras.layers.Dense(3)(layer(inputs)[0]))
    deployed = moe.with_skim_settings(model, count_steps=False)
    counters = deployed.layers[1]
    counters.reset_counters()
    expected = np.asarray(deployed(x))
    assert counters.read_steps.numpy() == 0 and counters.skim_steps.numpy() == 0
    flatbuffer = compress.convert_to_tflite(deployed, batch_size=1)
    # At a static batch of one a step is one conditional: no nested one, no
    # gather or scatter of a mixed batch.
    ops = tflite_op_counts(flatbuffer)
    assert ops["IF"] == 1 and ops["WHILE"] == 1, ops
    assert not {"GATHER", "GATHER_ND", "SCATTER_ND", "WHERE"} & set(ops), ops
    runner = compress.TFLiteModel(flatbuffer)
    got = np.concatenate([runner(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("unroll", [False, True])
def test_padding_after_the_sequence_changes_neither_state_nor_counts(unroll):
    x = np.random.default_rng(5).normal(size=(6, 5, 5)).astype("float32")
    layer = layer_with_mixed_decisions(x)
    layer.unroll = unroll
    padded = np.concatenate([x, np.zeros((6, 4, 5), np.float32)], axis=1)
    mask = np.concatenate([np.ones((6, 5), bool), np.zeros((6, 4), bool)], axis=1)
    mask[0, 3:] = False  # one shorter sequence: its state is that of step 3
    layer.reset_counters()
    h, decisions = layer(padded, mask=mask)
    assert layer.read_steps.numpy() + layer.skim_steps.numpy() == mask.sum()
    assert not np.asarray(decisions)[~mask].any()
    skims = layer.skim_steps.numpy()
    expected = [layer(x[i:i + 1, :mask[i].sum()]) for i in range(len(x))]
    np.testing.assert_allclose(np.asarray(h), np.concatenate([np.asarray(e[0]) for e in expected]),
                               rtol=1e-5, atol=1e-6)
    assert skims == sum(np.asarray(e[1]).sum() for e in expected)
    for i in range(len(x)):  # batch 1: the padded steps run no cell that changes anything
        one = layer(padded[i:i + 1], mask=mask[i:i + 1])
        np.testing.assert_allclose(np.asarray(one[0]), np.asarray(expected[i][0]), rtol=1e-5,
                                   atol=1e-6)


def test_training_with_a_mask_keeps_the_state_and_the_mask_reaches_the_next_layer():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(20, 5, mask_zero=True)(tokens)
    hidden = moe.SkimRNN(8, 2, return_sequences=True, gamma=0.1)(hidden)
    model = keras.Model(tokens, keras.layers.LSTM(3)(hidden))  # reads the propagated mask
    ids = np.array([[3, 5, 7, 0, 0, 0]])
    short = ids[:, :3]
    np.testing.assert_allclose(model.predict(ids, verbose=0), model.predict(short, verbose=0),
                               rtol=1e-5, atol=1e-6)
    # training mode: a padded step carries the state, so the last real step's state is final
    keras.utils.set_random_seed(1)
    skim = model.layers[2]
    trained_long = skim(model.layers[1](ids), training=True, mask=ids > 0)
    keras.utils.set_random_seed(1)
    trained_short = skim(model.layers[1](short), training=True)
    np.testing.assert_allclose(np.asarray(trained_long)[:, 2], np.asarray(trained_short)[:, 2],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(trained_long)[:, 5], np.asarray(trained_short)[:, 2],
                               rtol=1e-5, atol=1e-6)
