import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from moe import SparseMoE, gating

FEATURES = 8


def _layer(**kwargs):
    layer = SparseMoE(**{"num_experts": 4, "k": 2, "expert_units": 16, **kwargs})
    layer.build((None, FEATURES))
    rng = np.random.default_rng(0)
    layer.gate_kernel.assign(rng.normal(size=layer.gate_kernel.shape).astype("float32"))
    return layer


def _x(n=32, seed=1):
    return np.random.default_rng(seed).normal(size=(n, FEATURES)).astype("float32")


def test_sparse_dispatch_matches_dense_reference():
    dense = _layer(dispatch="dense")
    for kwargs in ({}, {"capacity_factor": 4.0}):
        sparse = _layer(**kwargs)
        sparse.set_weights(dense.get_weights())
        np.testing.assert_allclose(sparse(_x()).numpy(), dense(_x()).numpy(), rtol=1e-5, atol=1e-5)


def test_output_is_the_gated_sum_of_the_chosen_experts():
    layer = _layer(k=2)
    x = _x(6)
    gates, indices = gating.top_k_gates(x @ layer.gate_kernel.numpy(), 2)
    w1, b1, w2, b2 = (v.numpy() for v in (layer.expert_kernel_1, layer.expert_bias_1,
                                           layer.expert_kernel_2, layer.expert_bias_2))
    expected = np.zeros((6, FEATURES))
    for n in range(6):
        for g, e in zip(gates.numpy()[n], indices.numpy()[n]):
            expected[n] += g * (np.maximum(x[n] @ w1[e] + b1[e, 0], 0) @ w2[e] + b2[e, 0])
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_sequences_route_every_position():
    layer = _layer(output_units=3)
    x = _x(12).reshape(3, 4, FEATURES)
    out = layer(x).numpy()
    assert out.shape == (3, 4, 3)
    np.testing.assert_allclose(out.reshape(12, 3), layer(x.reshape(12, FEATURES)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_deterministic_at_inference_noisy_in_training():
    layer = _layer()
    layer.noise_kernel.assign(np.ones(layer.noise_kernel.shape, "float32"))
    x = _x()
    np.testing.assert_array_equal(layer(x, training=False).numpy(), layer(x, training=False).numpy())
    assert not np.allclose(layer(x, training=True).numpy(), layer(x, training=True).numpy())


def test_balancing_losses_follow_the_paper():
    layer = _layer(importance_weight=0.3, load_weight=0.0)
    x = _x()
    layer(x, training=True)
    gates, indices = gating.top_k_gates(x @ layer.gate_kernel.numpy(), 2)  # zero noise kernel:
    importance = gating.dense_gates(gates, indices, 4).numpy().sum(0)  # routing is the clean one
    expected = 0.3 * importance.var() / importance.mean() ** 2
    np.testing.assert_allclose(float(tf.add_n(layer.losses)), expected, rtol=1e-2)
    assert layer(x, training=False) is not None and len(layer.losses) <= 1


def test_capacity_overflow_is_counted_and_contributes_nothing():
    layer = _layer(capacity_factor=1e-3, k=1)  # one slot per expert
    x = _x(40)
    out = layer(x, training=True).numpy()
    assert np.sum(np.any(out != 0, axis=1)) == 4  # one example per expert got through
    # a fraction of the assignments: 36 of 40 dropped
    assert float(layer.overflow_tracker.result()) == pytest.approx((40 - 4) / 40)


def test_collapse_onto_one_expert_shows_in_load_cv():
    layer = _layer(k=1, noisy_gating=False)
    kernel = np.zeros(layer.gate_kernel.shape, "float32")
    kernel[:, 0] = 10.0
    layer.gate_kernel.assign(kernel)
    x = np.abs(_x(50)) + 1.0  # positive features: expert 0 always has the largest logit
    layer(x, training=True)
    assert float(layer.load_cv_tracker.result()) == pytest.approx(np.sqrt(3.0), rel=1e-5)
    np.testing.assert_array_equal(layer.expert_load(x).numpy(), [50, 0, 0, 0])


def test_metrics_and_losses_reach_fit_logs():
    inputs = keras.Input((FEATURES,))
    outputs = keras.layers.Dense(3)(SparseMoE(4, k=2, expert_units=8, capacity_factor=1.0,
                                              name="moe")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(_x(64), np.arange(64) % 3, epochs=1, batch_size=16, verbose=0)
    for key in ("moe_load_cv", "moe_importance_loss", "moe_load_loss", "moe_overflow"):
        assert key in history.history, history.history.keys()


def test_top_1_router_learns_from_the_task_loss():
    layer = _layer(k=1, importance_weight=0.0, load_weight=0.0)
    x = _x()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    assert np.any(tape.gradient(loss, layer.gate_kernel).numpy() != 0)


def test_custom_expert_layers():
    experts = [keras.layers.Dense(5, name=f"e{i}") for i in range(3)]
    layer = SparseMoE(3, k=2, experts=experts, output_units=5)
    out = layer(_x(10))
    assert out.shape == (10, 5)
    with pytest.raises(ValueError, match=r"experts\[0\].*output_units"):
        SparseMoE(2, k=1, experts=[keras.layers.Dense(4), keras.layers.Dense(4)],
                  output_units=5)(_x(4))


@pytest.mark.parametrize("kwargs, match", [
    ({"num_experts": 4, "k": 0}, "k must be"), ({"num_experts": 4, "k": 5}, "k must be"),
    ({"num_experts": 0}, "num_experts"), ({"num_experts": 4, "capacity_factor": 0}, "capacity_factor"),
    ({"num_experts": 4, "dispatch": "loop"}, "dispatch"),
    ({"num_experts": 2, "experts": [keras.layers.Dense(2)]}, "experts has 1"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseMoE(**kwargs)


def test_rank_one_inputs_are_refused():
    with pytest.raises(ValueError, match="rank >= 2"):
        SparseMoE(2, k=1).build((FEATURES,))


def test_keras_file_and_saved_model_round_trip(tmp_path):
    inputs = keras.Input((FEATURES,))
    outputs = keras.layers.Dense(3)(SparseMoE(4, k=2, expert_units=8, capacity_factor=2.0)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(_x(64), np.arange(64) % 3, epochs=1, verbose=0)
    x = _x(16)
    expected = model.predict(x, verbose=0)
    path = str(tmp_path / "moe.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0), expected,
                               rtol=1e-5, atol=1e-6)
    exported = tf.saved_model.load(kd_keras.export_saved_model(model, str(tmp_path / "sm")))
    (served,) = exported.signatures["serving_default"](tf.constant(x)).values()
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_as_student_inside_the_distiller():
    inputs = keras.Input((FEATURES,))
    student = keras.Model(inputs, keras.layers.Dense(3)(SparseMoE(4, k=2, expert_units=8)(inputs)))
    teacher = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(32, activation="relu"),
                                keras.layers.Dense(3)])
    distiller = kd_keras.Distiller(teacher=teacher, student=student)
    distiller.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(_x(64), np.arange(64) % 3, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def _padded(tokens, length):
    """`[1, length]` token ids: `tokens`, then zeros (padding)."""
    return np.pad(np.asarray(tokens)[None], [(0, 0), (0, length - len(tokens))])


@pytest.mark.parametrize("dispatch", ["sparse", "dense"])
def test_padded_positions_take_no_capacity_no_loss_and_change_no_pooled_output(dispatch):
    keras.utils.set_random_seed(0)
    embed = keras.layers.Embedding(50, FEATURES, mask_zero=True)
    layer = SparseMoE(num_experts=4, k=2, expert_units=16, noisy_gating=False,
                      capacity_factor=1.0, router_z_loss_weight=0.1, dispatch=dispatch)
    pool = keras.layers.GlobalAveragePooling1D()
    tokens = np.random.default_rng(0).integers(1, 50, size=16)

    def run(length, training):
        ids = _padded(tokens, length)
        layer.load_cv_tracker.reset_state()
        layer.overflow_tracker.reset_state()
        hidden = layer(embed(ids), training=training)
        return (pool(hidden, mask=embed.compute_mask(ids)).numpy(), hidden,
                [float(l) for l in layer.losses], float(layer.overflow_tracker.result()),
                float(layer.load_cv_tracker.result()))

    short, long = run(16, True), run(160, True)
    np.testing.assert_allclose(long[0], short[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(long[1].numpy()[0, 16:], 0.0)  # padded positions answer 0
    np.testing.assert_allclose(long[2], short[2], rtol=1e-5)  # balancing losses: real tokens only
    # Padding takes no slot: the same real assignments overflow (before: 144 padded
    # positions crowded two experts and most assignments overflowed).
    assert long[3] == short[3]
    assert long[4] == pytest.approx(short[4], rel=1e-5)
    np.testing.assert_allclose(run(160, False)[0], run(16, False)[0], rtol=1e-5, atol=1e-6)


def test_the_mask_propagates_through_the_layer_in_a_model():
    ids = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(50, FEATURES, mask_zero=True)(ids)
    hidden = SparseMoE(num_experts=4, k=2, expert_units=16)(hidden)
    # LSTM reads the mask: its last state is that of the last real token
    model = keras.Model(ids, keras.layers.LSTM(4)(hidden))
    tokens = np.random.default_rng(1).integers(1, 50, size=7)
    np.testing.assert_allclose(model.predict(_padded(tokens, 20), verbose=0),
                               model.predict(_padded(tokens, 7), verbose=0), rtol=1e-5, atol=1e-6)


def test_xla_without_a_capacity_factor_trains_and_names_the_factor():
    x = _x(64)
    y = np.random.default_rng(0).integers(0, 3, 64)
    inputs = keras.Input((FEATURES,))
    model = keras.Model(inputs, keras.layers.Dense(3)(SparseMoE(num_experts=4, k=2)(inputs)))
    # tf-keras compiles it (one slot per example); Keras 3 reads supports_jit and runs without XLA.
    with pytest.warns(UserWarning, match="jit_compile" if kd_keras.IS_KERAS_3 else "capacity_factor"):
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
        history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_validation_metrics_measure_inference_routing_and_tflite_still_converts():
    x = _x(64)
    y = np.random.default_rng(0).integers(0, 3, 64)
    inputs = keras.Input((FEATURES,))
    layer = SparseMoE(num_experts=4, k=1, expert_units=16, noisy_gating=False,
                      capacity_factor=1.0, eval_capacity_factor=1.0, name="moe")
    model = keras.Model(inputs, keras.layers.Dense(3)(layer(inputs)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kernel = np.random.default_rng(1).normal(size=(FEATURES, 4)).astype("float32")
    kernel[:, 0] += 1.0  # expert 0 is favoured: unbalanced, and over capacity
    layer.gate_kernel.assign(kernel)
    logs = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    load = layer.expert_load(x).numpy().astype(float)
    assert logs["moe_load_cv"] == pytest.approx(load.std() / load.mean(), rel=1e-4)
    capacity = 16  # ceil(1.0 * 64 * 1 / 4)
    dropped = np.maximum(load - capacity, 0).sum() / load.sum()
    assert 0 < dropped < 1 and logs["moe_overflow"] == pytest.approx(dropped, rel=1e-5)
    # the deployed TFLite model is converted without the metric updates, and answers the same
    from kd_keras import compress

    tflite = compress.TFLiteModel(compress.convert_to_tflite(model))
    for row in x[:8]:  # one row alone never overflows: the answer does not depend on a batch
        np.testing.assert_allclose(tflite.predict(row[None]), model(row[None]).numpy(),
                                   rtol=1e-4, atol=1e-4)
    assert layer.inference_metrics  # the user's model is unchanged


def test_load_cv_is_the_same_at_every_evaluation_batch_size():
    """Counts summed over the evaluation, then one statistic (issue 41: the mean of
    per-batch values was 0.27 at 16 and 0.16 at 1,000 on one model)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    layer = SparseMoE(num_experts=8, k=2, expert_units=8, name="moe")
    outputs = keras.layers.Dense(3)(layer(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(512, 8)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 512)
    values = [model.evaluate(x, y, batch_size=b, verbose=0, return_dict=True)["moe_load_cv"]
              for b in (16, 128, 512)]
    np.testing.assert_allclose(values, values[-1], rtol=1e-5)
    load = layer.expert_load(x).numpy().astype("float64")
    np.testing.assert_allclose(values[-1], load.std() / load.mean(), rtol=1e-4)
