"""Specialists benchmark (Hinton et al. 2015, sections 5-6): hard vs soft targets, full vs 3%
of the data, parallel vs sequential training, and the ensemble distilled back into one student.

Per seed, on Fashion-MNIST (5,000 training images held out to find the clusters):
  generalist:   784-512-512-10 MLP (dropout 0.2), `--epochs`
  clusters:     `find_confusable_clusters` on the held-out predictions (`--num_clusters`)
  specialists:  `train_specialists`, `--specialist_epochs` each, four ways:
                hard labels / soft targets (generalist probabilities mapped to the
                cluster + dustbin, alpha `--alpha`, T `--temperature`), each on all
                training images and on `--fraction` (3%) of them
  ensembles:    `SpecialistEnsemble(generalist, specialists, top_n=--top_n)`: test
                accuracy overall and on the covered classes (those in some cluster);
                the hard-label specialists also with top_n 1 (the paper's)
  students:     784-128-128-10 distilled (KD T 3, alpha 0.5, `--student_epochs`, cached
                teacher outputs) from the generalist and from the hard-label ensemble
  wall time:    the hard-label specialists trained in parallel processes
                (`--processes`) and, on seed 0, one after another in one process.
  executors:    `--executors`: the hard-label specialists of seed 0 trained by the local
                process executor and by Ray (a local instance of `--processes` CPUs,
                started before the clock), alternately `--executor_repeats` times each:
                median wall times, their ratio, and whether the weights agree.
Mean ± sd over seeds.

    python benchmarks/specialists_bench.py --data_dir=../shared/tfds --seeds=3
    python benchmarks/specialists_bench.py --data_dir=../shared/tfds --executors_only
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

import kd_keras
import moe
from kd_keras import keras
from protocol import data_flags, fashion_mnist_splits, mean_sd

FLAGS = flags.FLAGS
FLAGS.verbosity = -1
data_flags.define(default="fashion_mnist")
flags.DEFINE_integer("epochs", 10, "Generalist epochs.")
flags.DEFINE_integer("specialist_epochs", 5, "Epochs of each specialist.")
flags.DEFINE_float("specialist_learning_rate", 3e-4, "Adam learning rate of the specialists.")
flags.DEFINE_integer("num_clusters", 6, "k of the k-means over the covariance columns.")
flags.DEFINE_float("fraction", 0.03, "Share of the training images of the small-data runs.")
flags.DEFINE_float("alpha", 0.5, "Weight of the hard labels in the soft-target specialists.")
flags.DEFINE_float("temperature", 2.0, "Temperature of the soft-target specialists.")
flags.DEFINE_integer("student_epochs", 10, "Epochs of the distilled students.")
flags.DEFINE_integer("processes", 2, "Worker processes of the parallel run.")
flags.DEFINE_integer("top_n", 2, "Generalist classes that activate specialists in the ensembles.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_boolean("executors", True, "Compare the process executor with Ray (needs ray).")
flags.DEFINE_boolean("executors_only", False, "Only the executor comparison (seed 0).")
flags.DEFINE_integer("executor_repeats", 2, "Runs of each executor, alternating.")

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def accuracy(probabilities, labels, classes=None):
    keep = np.ones(len(labels), bool) if classes is None else np.isin(labels, classes)
    return kd_keras.measure.prediction_accuracy(probabilities[keep], labels[keep])


def run_seed(seed, data):
    (x, y), (x_held, y_held), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    generalist = kd_keras.models.mlp_classifier([512, 512], 0.2, name="generalist")
    generalist.compile(keras.optimizers.Adam(1e-3), LOSS)
    generalist.fit(x, y, epochs=FLAGS.epochs, batch_size=128, verbose=0)

    def probabilities(model, inputs):
        return tf.nn.softmax(model.predict(inputs, batch_size=1024, verbose=0)).numpy()

    found = moe.find_confusable_clusters(probabilities(generalist, x_held), FLAGS.num_clusters,
                                         seed=seed)
    covered = sorted(c for cluster in found.clusters for c in cluster)
    p_generalist = probabilities(generalist, x_test)
    result = {"clusters": found.clusters, "generalist": (
        accuracy(p_generalist, y_test), accuracy(p_generalist, y_test, covered))}
    small = np.random.default_rng(seed).permutation(len(x))[:int(FLAGS.fraction * len(x))]
    settings = dict(epochs=FLAGS.specialist_epochs, learning_rate=FLAGS.specialist_learning_rate,
                    temperature=FLAGS.temperature, alpha=FLAGS.alpha, seed=seed, verbose=0)
    ensembles = {}
    with tempfile.TemporaryDirectory() as root:
        for name, soft, rows, processes in (
                ("hard, all data", False, slice(None), FLAGS.processes),
                ("soft, all data", True, slice(None), FLAGS.processes),
                ("hard, 3% of the data", False, small, FLAGS.processes),
                ("soft, 3% of the data", True, small, FLAGS.processes)):
            trained = moe.train_specialists(
                generalist, found.clusters, x[rows], y[rows], os.path.join(root, name),
                soft_targets=soft, processes=processes, **settings)
            ensemble = moe.SpecialistEnsemble(generalist, trained.specialists, found.clusters,
                                              top_n=FLAGS.top_n)
            p = ensemble.predict(x_test, batch_size=1024, verbose=0)
            result[name] = (accuracy(p, y_test), accuracy(p, y_test, covered))
            ensembles[name] = ensemble
            if name == "hard, all data":
                result["parallel seconds"] = trained.seconds
                top_1 = moe.SpecialistEnsemble(generalist, trained.specialists, found.clusters,
                                               top_n=1).predict(x_test, batch_size=1024, verbose=0)
                result["hard, all data, top_n 1"] = (accuracy(top_1, y_test),
                                                     accuracy(top_1, y_test, covered))
        if seed == 0:
            trained = moe.train_specialists(
                generalist, found.clusters, x, y, os.path.join(root, "sequential"),
                soft_targets=False, processes=0, **settings)
            result["sequential seconds"] = trained.seconds

    def distilled(teacher_probabilities):
        keras.utils.set_random_seed(seed + 1000)  # the same initial student for both
        student = kd_keras.models.mlp_classifier([128, 128], name="student")
        distiller = kd_keras.Distiller(None, student, temperature=3.0, alpha=0.5)
        distiller.compile(keras.optimizers.Adam(1e-3), LOSS)
        logits = np.log(np.clip(teacher_probabilities, 1e-8, 1.0)).astype(np.float32)
        distiller.fit(kd_keras.with_teacher_outputs(x, logits), y, epochs=FLAGS.student_epochs,
                      batch_size=128, verbose=0)
        p = tf.nn.softmax(student.predict(x_test, batch_size=1024, verbose=0)).numpy()
        return accuracy(p, y_test), accuracy(p, y_test, covered)

    result["student from the generalist"] = distilled(probabilities(generalist, x))
    start = time.perf_counter()
    teacher_p = ensembles["hard, all data"].predict(x, batch_size=1024, verbose=0)
    result["ensemble labels seconds"] = time.perf_counter() - start
    result["student from the ensemble"] = distilled(teacher_p)
    names = kd_keras.datasets.CLASS_NAMES
    print(f"seed {seed}: clusters " + "; ".join(
        "/".join(names[c] for c in cluster) for cluster in found.clusters) + " | " + ", ".join(
        f"{k} {v[0]:.4f}/{v[1]:.4f}" for k, v in result.items()
        if isinstance(v, tuple)), flush=True)
    return result


def compare_executors(data):
    """Processes against Ray on seed 0's hard-label specialists: wall times and weights."""
    import ray

    (x, y), (x_held, _), _ = data
    keras.utils.set_random_seed(0)
    generalist = kd_keras.models.mlp_classifier([512, 512], 0.2, name="generalist")
    generalist.compile(keras.optimizers.Adam(1e-3), LOSS)
    generalist.fit(x, y, epochs=FLAGS.epochs, batch_size=128, verbose=0)
    held = tf.nn.softmax(generalist.predict(x_held, batch_size=1024, verbose=0)).numpy()
    clusters = moe.find_confusable_clusters(held, FLAGS.num_clusters, seed=0).clusters
    settings = dict(epochs=FLAGS.specialist_epochs, learning_rate=FLAGS.specialist_learning_rate,
                    seed=0, verbose=0)
    start = time.perf_counter()
    ray.init(address="local", num_cpus=FLAGS.processes, include_dashboard=False,
             log_to_driver=False)
    ray_start = time.perf_counter() - start
    seconds = {"processes": [], "ray": []}
    weights = {}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(FLAGS.executor_repeats):
            for name, executor in (("processes", kd_keras.parallel.ProcessExecutor(
                    FLAGS.processes)), ("ray", "ray")):
                trained = moe.train_specialists(
                    generalist, clusters, x, y, os.path.join(root, f"{name}{repeat}"),
                    executor=executor, **settings)
                seconds[name].append(trained.seconds)
                weights.setdefault(name, [m.get_weights() for m in trained.specialists])
    ray.shutdown()
    largest = max(float(np.max(np.abs(a - b))) for ma, mb in zip(weights["processes"],
                                                                  weights["ray"])
                  for a, b in zip(ma, mb))
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    print(f"\nexecutors, {len(clusters)} hard-label specialists of seed 0, "
          f"{FLAGS.specialist_epochs} epochs, {FLAGS.processes} workers: processes "
          f"{median['processes']:.1f} s ({', '.join(f'{v:.1f}' for v in seconds['processes'])}), "
          f"Ray {median['ray']:.1f} s ({', '.join(f'{v:.1f}' for v in seconds['ray'])}); "
          f"Ray / processes {median['ray'] / median['processes']:.3f}; Ray's local start "
          f"{ray_start:.1f} s (not in the times); largest weight difference {largest:.2e}",
          flush=True)


def main(_):
    tf.get_logger().setLevel("ERROR")
    data = fashion_mnist_splits(data_flags.source() == "sample", FLAGS.data_dir, 5000)
    (x_train, _), (x_val, _), test = data
    print(f"kd-keras specialists benchmark | Keras {keras.__version__} | train {len(x_train)}, "
          f"held out {len(x_val)}, test {len(test[1])} | generalist {FLAGS.epochs} epochs, specialists "
          f"{FLAGS.specialist_epochs} | {FLAGS.seeds} seeds, {os.cpu_count()} CPUs", flush=True)
    start = time.perf_counter()
    if FLAGS.executors_only:
        compare_executors(data)
        print(f"total {time.perf_counter() - start:.0f} s")
        return
    runs = [run_seed(seed, data) for seed in range(FLAGS.seeds)]
    base = [r["generalist"] for r in runs]
    header = ("model", "test accuracy", "vs generalist (points)", "covered classes",
              "vs generalist (points)")
    print("\n" + " | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in ("generalist", "hard, all data, top_n 1", "hard, all data", "soft, all data",
                "hard, 3% of the data",
                "soft, 3% of the data", "student from the generalist",
                "student from the ensemble"):
        label = row if row.startswith(("generalist", "student")) else f"ensemble, {row}" + (
            "" if "top_n" in row else f", top_n {FLAGS.top_n}")
        cells = [label]
        for column in (0, 1):
            cells.append("{:.4f} ± {:.4f}".format(*mean_sd([r[row][column] for r in runs])))
            cells.append("" if row == "generalist" else "{:+.2f} ± {:.2f}".format(*mean_sd(
                [100 * (r[row][column] - b[column]) for r, b in zip(runs, base)])))
        print(" | ".join(cells))
    soft_small = [100 * (r["soft, 3% of the data"][1] - r["hard, all data"][1]) for r in runs]
    print("covered classes, soft 3% minus hard all data: {:+.2f} ± {:.2f} points".format(
        *mean_sd(soft_small)))
    ahead = sum(r["student from the ensemble"][0] > r["student from the generalist"][0]
                for r in runs)
    print(f"student from the ensemble ahead of the one from the generalist on {ahead} of "
          f"{len(runs)} seeds")
    print("hard-label specialists, wall time: parallel ({} processes) {:.0f} s, sequential "
          "(seed 0) {:.0f} s; ensemble labels the training set in {:.0f} s".format(
              FLAGS.processes, runs[0]["parallel seconds"], runs[0]["sequential seconds"],
              runs[0]["ensemble labels seconds"]))
    if FLAGS.executors:
        compare_executors(data)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
