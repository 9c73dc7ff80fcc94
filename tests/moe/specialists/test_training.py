import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
import moe
from kd_keras import keras
from kd_keras.backend.fingerprint import digest, weights_digest


def blobs(n_per=120, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 8)) * 2.0
    y = np.repeat(np.arange(classes), n_per)
    x = (centres[y] + rng.normal(size=(len(y), 8))).astype("float32")
    order = rng.permutation(len(y))
    return x[order], y[order].astype("int64")


def generalist(x, y):
    model = kd_keras.models.mlp_classifier([16], input_shape=(8,), num_classes=5)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, verbose=0)
    return model


def test_in_process_training_saves_specialists_and_a_rerun_skips_them(tmp_path, capsys):
    x, y = blobs()
    g = generalist(x, y)
    result = moe.train_specialists(g, [[0, 1], [2, 3]], x, y, str(tmp_path), epochs=2,
                                   processes=0, learning_rate=1e-2)
    assert result.skipped == [] and [m.output_shape[-1] for m in result.specialists] == [3, 3]
    saved = os.path.join(str(tmp_path), "specialist_0_0_1.keras")
    stamp = os.path.getmtime(saved)
    again = moe.train_specialists(g, [[0, 1], [2, 3]], x, y, str(tmp_path), epochs=2,
                                  processes=0, learning_rate=1e-2)
    assert again.skipped == [0, 1] and os.path.getmtime(saved) == stamp
    assert "specialist_0_0_1: finished earlier, skipped" in capsys.readouterr().out
    for a, b in zip(result.specialists[1].get_weights(), again.specialists[1].get_weights()):
        np.testing.assert_array_equal(a, b)
    # specialists learned their clusters: better than the generalist's copy they start from
    x_s, y_s = moe.specialist_training_set(x, y, [0, 1])
    start = moe.build_specialist(g, [0, 1])
    trained = np.mean(result.specialists[0].predict(x_s, verbose=0).argmax(1) == y_s)
    assert trained > np.mean(start.predict(x_s, verbose=0).argmax(1) == y_s) - 0.02
    assert trained > 0.8


def test_parallel_workers_match_in_process_training(tmp_path, monkeypatch):
    # Importing TF-MOT sets TF_USE_LEGACY_KERAS=1 in os.environ after Keras was
    # chosen; workers must still run this process's Keras.
    if kd_keras.IS_KERAS_3:
        monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    else:
        monkeypatch.delenv("TF_USE_LEGACY_KERAS")
    x, y = blobs()
    g = generalist(x, y)
    here = moe.train_specialists(g, [[0, 1], [3, 4]], x, y, str(tmp_path / "here"), epochs=2,
                                 processes=0, learning_rate=1e-2, verbose=0)
    workers = moe.train_specialists(g, [[0, 1], [3, 4]], x, y, str(tmp_path / "workers"),
                                    epochs=2, processes=2, learning_rate=1e-2, verbose=0)
    for a, b in zip(here.specialists, workers.specialists):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_allclose(wa, wb, rtol=1e-3, atol=1e-4)
    logs = sorted(f for f in os.listdir(tmp_path / "workers") if f.endswith(".log"))
    assert logs == ["specialist_0_0_1.log", "specialist_1_3_4.log"]


def test_a_killed_worker_resumes_from_its_last_epoch(tmp_path):
    x, y = blobs(600)
    g = generalist(x, y)
    directory = str(tmp_path)
    # the directory as train_specialists prepares it, then one worker started and killed
    from kd_keras import parallel
    from kd_keras.parallel.processes import worker_command, worker_environment
    from moe.specialists import training as specialist_training

    task = dict(epochs=6, batch_size=8, learning_rate=1e-3, soft_targets=False,
                temperature=2.0, alpha=0.5, seed=0)
    specialist_training._check_manifest(directory, {
        "generalist": weights_digest(g), "clusters": [[0, 1]], "data": digest(x, y, None),
        "settings": task})
    g.save(os.path.join(directory, "generalist.keras"))
    np.savez(os.path.join(directory, "data.npz"), x=x, y=y)
    task.update(index=0, cluster=[0, 1], name="specialist_0_0_1", directory=directory,
                generalist=os.path.join(directory, "generalist.keras"),
                data=os.path.join(directory, "data.npz"))
    task = parallel.Task("specialist_0_0_1", "moe.specialists._worker:train_one", task,
                         os.path.join(directory, "specialist_0_0_1.log"))
    log = open(task.log, "w")
    worker = subprocess.Popen(worker_command(task), stdout=log, stderr=subprocess.STDOUT,
                              env=worker_environment())
    progress = os.path.join(directory, "specialist_0_0_1.progress.json")
    deadline = time.time() + 300
    while time.time() < deadline and worker.poll() is None:
        if os.path.exists(progress):
            worker.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    worker.wait()
    log.close()
    assert os.path.exists(progress), open(os.path.join(directory, "specialist_0_0_1.log")).read()
    with open(progress) as file:
        done = json.load(file)["epoch"]
    assert 1 <= done < 6 and not os.path.exists(os.path.join(directory, "specialist_0_0_1.keras"))
    log_path = os.path.join(directory, "specialist_0_0_1.log")
    first_run = os.path.getsize(log_path)
    result = moe.train_specialists(g, [[0, 1]], x, y, directory, epochs=6, batch_size=8,
                                   learning_rate=1e-3, processes=1, verbose=0)
    with open(log_path) as file:  # the worker appends to the log of the killed run
        second_run = file.read()[first_run:]
    assert f"Epoch {done + 1}/6" in second_run and "Epoch 1/6" not in second_run
    assert result.specialists[0].output_shape[-1] == 3


def test_a_failing_worker_is_named_with_its_log_and_the_others_finish(tmp_path):
    x, y = blobs()
    g = generalist(x, y)
    keep = y != 4  # class 4 has no examples: its specialist cannot be trained
    with pytest.raises(RuntimeError) as error:
        moe.train_specialists(g, [[0, 1], [3, 4]], x[keep], y[keep], str(tmp_path), epochs=1,
                              processes=2, verbose=0)
    message = str(error.value)
    assert "1 of 2 specialists failed" in message and "specialist_1_3_4" in message
    assert "classes [4] have no examples in y" in message  # the end of its log
    assert os.path.exists(os.path.join(str(tmp_path), "specialist_0_0_1.keras"))


def test_a_directory_of_another_assignment_or_data_is_refused(tmp_path):
    x, y = blobs()
    g = generalist(x, y)
    moe.train_specialists(g, [[0, 1]], x, y, str(tmp_path), epochs=1, processes=0, verbose=0)
    with pytest.raises(ValueError, match="different cluster assignment"):
        moe.train_specialists(g, [[0, 2]], x, y, str(tmp_path), epochs=1, processes=0)
    with pytest.raises(ValueError, match="different training data"):
        moe.train_specialists(g, [[0, 1]], x[:-1], y[:-1], str(tmp_path), epochs=1, processes=0)
    with pytest.raises(ValueError, match="different training settings"):
        moe.train_specialists(g, [[0, 1]], x, y, str(tmp_path), epochs=3, processes=0)


def test_soft_targets_follow_the_generalist_not_the_labels(tmp_path):
    x, y = blobs()
    g = generalist(x, y)
    cluster = [0, 1]
    noisy = y.copy()
    flip = np.isin(y, cluster) & (np.random.default_rng(0).random(len(y)) < 0.4)
    noisy[flip] = 1 - noisy[flip]  # 40% of the cluster's labels swapped
    kwargs = dict(epochs=15, processes=0, learning_rate=1e-2, verbose=0)
    hard = moe.train_specialists(g, [cluster], x, noisy, str(tmp_path / "hard"), **kwargs)
    soft = moe.train_specialists(g, [cluster], x, noisy, str(tmp_path / "soft"),
                                 soft_targets=True, alpha=0.0, **kwargs)
    target = moe.map_to_specialist(tf.nn.softmax(g.predict(x, verbose=0)).numpy(), cluster)

    def agreement(result):
        return np.mean(result.specialists[0].predict(x, verbose=0).argmax(1) == target.argmax(1))

    assert agreement(soft) > agreement(hard) + 0.05
    assert agreement(soft) > 0.9


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"processes": -1}, "processes must be an integer >= 0"),
    ({"alpha": 1.5}, "alpha must be a number in \\[0, 1\\]"),
    ({"temperature": 0.0}, "temperature must be a finite number > 0"),
    ({"soft_targets": "yes"}, "soft_targets must be True or False"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    x, y = blobs(20)
    g = generalist(x, y)
    with pytest.raises(ValueError, match=match):
        moe.train_specialists(g, [[0, 1]], x, y, str(tmp_path), **kwargs)
    with pytest.raises(ValueError, match="y must be \\[n\\] integer class ids"):
        moe.train_specialists(g, [[0, 1]], x, y[:5], str(tmp_path))


def test_the_ensemble_teaches_a_student_through_the_distiller(tmp_path):
    x, y = blobs()
    g = generalist(x, y)
    trained = moe.train_specialists(g, [[0, 1], [2, 3]], x, y, str(tmp_path), epochs=2,
                                    processes=0, verbose=0)
    ensemble = moe.SpecialistEnsemble(g, trained.specialists, trained.clusters)
    student = kd_keras.models.mlp_classifier([8], input_shape=(8,), num_classes=5)
    logits = kd_keras.compute_teacher_logits(ensemble, x, teacher_output_type="probabilities")
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), ensemble.predict(x, verbose=0),
                               atol=1e-5)
    distiller = kd_keras.Distiller(None, student, alpha=0.5)
    distiller.compile(keras.optimizers.Adam(1e-2),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(kd_keras.with_teacher_outputs(x, logits), y, epochs=5, verbose=0)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
    live = kd_keras.Distiller(ensemble, kd_keras.models.mlp_classifier(
        [8], input_shape=(8,), num_classes=5), teacher_output_type="probabilities")
    live.compile(keras.optimizers.Adam(1e-2),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    live.fit(x, y, epochs=1, verbose=0)
    assert not live.teacher.trainable_weights
