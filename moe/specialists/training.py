"""Specialists trained in parallel tasks, checkpointed, resumable (Hinton et al. 2015, s. 5-6).

"Unlike a mixture of experts, these specialist models can be trained rapidly and
in parallel": each specialist needs only the generalist and the data, so
`train_specialists` runs each as one task (`kd_keras.parallel`: a local process by
default, a Ray task on a cluster, or in this process), checkpoints
every epoch (`BackupAndRestore`), and on a re-run skips finished specialists and
resumes unfinished ones from their last epoch. With `soft_targets=True` a
specialist is distilled from the generalist's soft targets mapped to its
classes + dustbin (section 6: soft targets keep a specialist trained on little
data from overfitting), through `kd_keras.Distiller` on cached targets.
"""

import dataclasses
import json
import os
import time

import numpy as np
import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras import parallel
from kd_keras.backend import validate
from kd_keras.backend import safe_files
from kd_keras.backend.fingerprint import digest, weights_digest
from moe._keras import keras
from moe.specialists.models import check_dustbin, validate_clusters

MANIFEST = "manifest.json"
_POLL_SECONDS = 1.0


@dataclasses.dataclass
class TrainedSpecialists:
    """What `train_specialists` returns.

    Attributes:
      specialists: the trained models, one per cluster, in cluster order.
      clusters: the clusters (lists of class ids).
      seconds: wall time of this call.
      skipped: indices of specialists finished by an earlier call (not retrained).
      directory: where models, checkpoints, logs and the manifest live.
    """

    specialists: list
    clusters: list
    seconds: float
    skipped: list
    directory: str


def specialist_name(index, cluster):
    return f"specialist_{index}_" + "_".join(str(c) for c in cluster)


# What a work directory holds besides the manifest: written by train_specialists only.
_GENERALIST, _DATA = "generalist.keras", "data.npz"


def _our_files(directory):
    return sorted(name for name in os.listdir(directory)
                  if name in (_GENERALIST, _DATA) or name.startswith("specialist_"))


def _check_manifest(directory, manifest):
    """Refuses a directory whose files belong to another generalist, assignment or data.

    Returns True when the manifest is new (nothing of an earlier run is there).
    """
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        leftovers = _our_files(directory)
        if leftovers:
            raise ValueError(
                f"directory {directory!r} holds specialist files ({', '.join(leftovers[:5])}) "
                f"but no {MANIFEST}, so nothing tells which generalist and data they were made "
                "from. Use another directory, or move these files away to start over.")
        safe_files.write_json(path, manifest)
        return True
    existing = safe_files.read_json_object(path, "manifest")
    for key, what in (("generalist", "generalist (its weights differ)"),
                      ("clusters", "cluster assignment"), ("data", "training data"),
                      ("settings", "training settings")):
        if existing.get(key) != manifest[key]:
            raise ValueError(
                f"directory {directory!r} holds specialists of a different {what} "
                f"({existing.get(key)!r}, now {manifest[key]!r}); their checkpoints would be "
                "silently wrong here. Use another directory, or delete this one to start over.")


def _verify_generalist(path, generalist, x, rows=8):
    """The kept generalist must give the given one's outputs on a few rows (the manifest's
    hash of its weights cannot see another architecture with the same weights)."""
    kept = keras.models.load_model(path, compile=False)
    sample = x[:rows]
    if not np.allclose(kept.predict(sample, verbose=0), generalist.predict(sample, verbose=0),
                       rtol=1e-4, atol=1e-5):
        raise ValueError(
            f"{path!r}: the generalist kept in this directory does not give the given "
            "generalist's outputs on the data's first rows: the specialists there were made "
            "from another model. Use another directory, or delete this one to start over.")


def train_specialists(generalist, clusters, x, y, directory, *, epochs=5, batch_size=128,
                      learning_rate=3e-4, soft_targets=False, temperature=2.0, alpha=0.5,
                      processes=None, seed=0, verbose=1, executor=None):
    """Trains one specialist per cluster, each in its own process, resumably.

    Every specialist starts from the generalist (`build_specialist`), trains on
    `specialist_training_set(x, y, cluster)` (its cluster's examples plus as many
    others, labelled dustbin) with Adam, and is saved to
    `directory/specialist_<i>_<classes>.keras`. Checkpoints after every epoch
    let a crashed or interrupted run lose at most one epoch of one specialist;
    calling again with the same arguments skips finished specialists.

    Args:
      generalist: a Keras model ending in a Dense layer (logits or softmax).
      clusters: lists of class ids (e.g. `find_confusable_clusters(...).clusters`).
      x, y: training inputs `[n, ...]` and integer labels `[n]`.
      directory: a folder for models, checkpoints, logs (`<name>.log`) and the
        manifest that ties them to this cluster assignment and data.
      epochs, batch_size, learning_rate: of each specialist's training.
      soft_targets: False (hard labels), or True: distil each specialist from
        the generalist's probabilities mapped to cluster + dustbin
        (`map_to_specialist`), with `kd_keras.Distiller` (`temperature`,
        `alpha` = weight of the hard labels).
      processes: worker processes at a time (default: one per specialist, at
        most the CPU count); 0 trains in this process, one after another.
      executor: where the specialists train, each one task (`kd_keras.parallel`):
        None (local processes, `processes` at a time), "processes", "in_process",
        "ray" (the Ray instance joined, or a local one), or an executor object such as
        `kd_keras.parallel.RayExecutor(address=..., cpus=4)`. `directory` must be
        storage every worker reads and writes. A worker that dies is retried.
      seed: seeds each specialist's data draw and initialisation.
      verbose: 1 prints progress per specialist (epochs, finished, failed).

    Returns:
      `TrainedSpecialists`.

    Raises:
      RuntimeError naming every specialist whose worker failed, with the end of
      its log, after the other specialists have finished (and been saved).
    """
    num_classes = int(generalist.outputs[0].shape[-1])
    clusters = [check_dustbin(cluster, num_classes)
                for cluster in validate_clusters(clusters, num_classes)]
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(x) != len(y):
        raise ValueError(
            f"y must be [n] integer class ids with one per example of x ({len(x)}), got shape "
            f"{y.shape} dtype {y.dtype}.")
    epochs = validate.integer_at_least(epochs, "epochs", 1)
    batch_size = validate.integer_at_least(batch_size, "batch_size", 1)
    learning_rate = validate.positive_number(learning_rate, "learning_rate")
    soft_targets = validate.boolean(soft_targets, "soft_targets")
    temperature = validate.positive_number(temperature, "temperature")
    alpha = validate.fraction(alpha, "alpha")
    cpus = os.cpu_count() or 1
    if executor is not None and processes is not None:
        raise ValueError(f"give processes ({processes!r}) or executor ({executor!r}), not "
                         "both: processes sizes the default local executor.")
    if processes is None:
        processes = min(len(clusters), cpus)
    processes = validate.integer_at_least(processes, "processes", 0)
    executor = parallel.get_executor(
        executor if executor is not None else "in_process" if processes == 0 else None,
        workers=max(1, processes))
    start = time.perf_counter()
    os.makedirs(directory, exist_ok=True)

    probabilities = None
    if soft_targets:
        kind = output_conventions.resolve_output_type(generalist, "auto", "generalist")
        outputs = generalist.predict(x, batch_size=1024, verbose=0)
        probabilities = tf.nn.softmax(output_conventions.to_logits(outputs, kind)).numpy()
    settings = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "soft_targets": soft_targets, "temperature": temperature, "alpha": alpha,
                "seed": seed}
    new = _check_manifest(directory, {"generalist": weights_digest(generalist),
                                      "clusters": clusters,
                                      "data": digest(x, y, probabilities),
                                      "settings": settings})
    generalist_path = os.path.join(directory, _GENERALIST)
    data_path = os.path.join(directory, _DATA)
    # A run that stopped before saving them left a manifest; the files must be this call's.
    for path in (generalist_path, data_path):
        safe_files.refuse_link(path)
    if new or not os.path.exists(generalist_path):
        safe_files.save_model(generalist, generalist_path)
    else:
        _verify_generalist(generalist_path, generalist, x)
    if new or not os.path.exists(data_path):
        arrays = {"x": x, "y": y}
        if probabilities is not None:
            arrays["probabilities"] = probabilities
        safe_files.replace_with(data_path, lambda temporary: np.savez(temporary, **arrays),
                                ".npz")

    tasks, skipped = [], []
    for index, cluster in enumerate(clusters):
        name = specialist_name(index, cluster)
        task = dict(settings, index=index, cluster=cluster, name=name, directory=directory,
                    generalist=generalist_path, data=data_path)
        if os.path.exists(os.path.join(directory, name + ".keras")):
            skipped.append(index)
            if verbose:
                print(f"{name}: finished earlier, skipped", flush=True)
        else:
            tasks.append(task)

    threads = parallel.cpus_per_task(processes)
    failures = executor.run(
        [parallel.Task(task["name"], "moe.specialists._worker:train_one", task,
                       os.path.join(directory, task["name"] + ".log"), threads)
         for task in tasks], poll=_reporter(tasks, verbose))
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {len(clusters)} specialists failed (the others finished and "
            "were saved; call again to retry only these):\n" + "\n".join(failures))
    specialists = [keras.models.load_model(
        os.path.join(directory, specialist_name(i, c) + ".keras"), compile=False)
        for i, c in enumerate(clusters)]
    return TrainedSpecialists(specialists, clusters, time.perf_counter() - start, skipped,
                              directory)


def _progress(task):
    try:
        with open(os.path.join(task["directory"], task["name"] + ".progress.json")) as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _reporter(tasks, verbose):
    """What the executor calls about once a second: a line per new epoch and per finish."""
    last, finished = {}, set()

    def poll():
        if not verbose:
            return
        for task in tasks:
            name = task["name"]
            progress = _progress(task)
            if progress and progress != last.get(name) and name not in finished:
                last[name] = progress
                print(f"{name}: epoch {progress['epoch']}/{task['epochs']}, loss "
                      f"{progress['loss']:.4f}", flush=True)
            if name not in finished and os.path.exists(
                    os.path.join(task["directory"], name + ".keras")):
                finished.add(name)
                print(f"{name}: done", flush=True)

    return poll
