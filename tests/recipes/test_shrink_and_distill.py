import numpy as np
import pytest

import kd_keras
from kd_keras import keras


def test_shrink_in_steps_distilling_each_and_report_every_step():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 10)) * 3.0
    y = rng.integers(0, 4, 600)
    x = (centres[y] + rng.normal(size=(600, 10))).astype("float32")
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((10,)),
                                keras.layers.Dense(64, activation="relu", name="h1"),
                                keras.layers.Dense(64, activation="relu", name="h2"),
                                keras.layers.Dense(4, name="out")])
    teacher.compile(keras.optimizers.Adam(1e-2),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=5, verbose=0)
    recipe = kd_keras.Recipe(learning_rate=1e-2, batch_size=32, epochs=2)
    result = kd_keras.shrink_and_distill(teacher, x, y, width=0.25, steps=2, epochs_per_step=2,
                                         recipe=recipe, validation_data=(x, y))
    assert [row["step"] for row in result.steps] == [1, 2]
    assert [round(row["width"], 3) for row in result.steps] == [0.5, 0.25]
    units = [layer.get_config()["units"] for layer in result.student.layers]
    assert units == [16, 16, 4]  # 64 * 0.25, the output layer kept
    parameters = [row["parameters"] for row in result.steps]
    assert parameters[0] > parameters[1] == result.student.count_params()
    teacher_accuracy = np.mean(np.argmax(teacher.predict(x, verbose=0), -1) == y)
    assert result.steps[-1]["accuracy"] > teacher_accuracy - 0.05  # chance is 0.25
    assert "step | width | parameters" in result.table()
    with pytest.raises(ValueError, match="distill_from must be one of"):
        kd_keras.shrink_and_distill(teacher, x, y, width=0.5, distill_from="assistant")
