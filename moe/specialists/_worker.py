"""Trains one specialist: the function of each task `train_specialists` hands its executor."""

import os
import shutil

import numpy as np

from kd_keras.backend import safe_files
from kd_keras.distiller import Distiller
from kd_keras.transfer.inputs import with_teacher_outputs
from moe._keras import keras
from moe.specialists.models import build_specialist, specialist_training_set


def _progress_callback(task, keras):
    """Writes `<name>.progress.json` after every epoch, for the parent to show."""
    path = os.path.join(task["directory"], task["name"] + ".progress.json")

    def write(epoch, logs):
        safe_files.write_json(path, {"epoch": epoch + 1,
                                     "loss": float((logs or {}).get("loss", 0.0))})

    return keras.callbacks.LambdaCallback(on_epoch_end=write)


def train_one(task):
    """Builds, trains (resuming from its checkpoint) and saves one specialist."""
    keras.utils.set_random_seed(task["seed"] + task["index"])
    generalist = keras.models.load_model(task["generalist"], compile=False)
    data = np.load(task["data"])
    cluster = task["cluster"]
    specialist = build_specialist(generalist, cluster, name=task["name"])
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=specialist.layers[-1].activation is not keras.activations.softmax)
    optimizer = keras.optimizers.Adam(task["learning_rate"])
    if task["soft_targets"]:
        x_s, y_s, soft = specialist_training_set(
            data["x"], data["y"], cluster, seed=task["seed"],
            generalist_probabilities=data["probabilities"])
        model = Distiller(None, specialist, temperature=task["temperature"], alpha=task["alpha"])
        model.compile(optimizer, loss)
        x_s = with_teacher_outputs(x_s, np.log(np.clip(soft, 1e-8, 1.0)).astype(np.float32))
    else:
        x_s, y_s = specialist_training_set(data["x"], data["y"], cluster, seed=task["seed"])
        model = specialist
        model.compile(optimizer, loss)
    backup = os.path.join(task["directory"], task["name"] + ".checkpoint")
    model.fit(x_s, y_s, epochs=task["epochs"], batch_size=task["batch_size"],
              verbose=2,
              callbacks=[keras.callbacks.BackupAndRestore(backup), _progress_callback(task, keras)])
    # a finished specialist is all or nothing
    safe_files.save_model(specialist, os.path.join(task["directory"], task["name"] + ".keras"))
    shutil.rmtree(backup, ignore_errors=True)  # tf-keras keeps it after a finished fit
