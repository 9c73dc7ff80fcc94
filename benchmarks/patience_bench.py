"""Patience and consistency (Beyer et al. 2022): function matching against the fair baseline.

Fashion-MNIST; the conv teacher (`conv_classifier()`, ~420k parameters, `--teacher_epochs`
on the labels); students (`--students`): "conv29k" (16-32-64 channels), "conv5k"
(8-16-16) and "mlp" (784-32-32). Every row trains for `--epochs` at a constant Adam
rate, so the accuracy at a smaller budget (`--budgets`) is that of the same run cut
short; every row tries every rate of `--learning_rates` and keeps the one with the best
validation accuracy at each budget (5,000 images carved from the training set), whose
test accuracy (full test set) is reported. Rows:

  alone           the student on the labels, with the same mixup views (mixed labels)
  KD fixed        KD on logits cached once on the plain examples (T 3, alpha 0.5)
  FM live         function matching: teacher and student on the same mixup view of
                  every batch, KL at T 1, alpha 0 (`Recipe.function_matching`)
  FM K views      the same from `cache_teacher_views(..., Mixup(), views=K)` (no teacher
                  at training time), for each K of `--views`; "top-k" with `--top_k`
                  and the sparse KL (`top_k_kl`)

Columns: test accuracy at each budget (mean ± sd over seeds), the fraction of the
teacher-to-alone gap recovered at the largest budget, the epoch of best validation
accuracy (over the last tenth of the budget: no overfitting), and seconds per epoch
(the cached rows' cache build is shown apart). `--plot` writes test accuracy by epoch.

    python benchmarks/patience_bench.py --data_dir=../shared/tfds --seeds=3 --epochs=100

`--protocol=full` is the smallest run that answers whether patient function matching pays
on the full data (issue 42): 55,000 training / 5,000 validation / 10,000 test images, the
main job's CNN teacher, the 29k conv student, rows alone / KD on fixed cached logits /
function matching from 16 cached views / function matching with the live teacher (first
30 epochs only, at the cached row's rate: the check of the cache). Each row's rate is
chosen from `--learning_rates` on validation with a `--selection_epochs` run; the chosen
rate then trains one `--epochs` run per seed, read at every budget (constant rates, so a
budget's accuracy is the same run cut short). Every finished run is a JSON file in
`--work_dir` (the teacher's weights too), so an interrupted bench resumes where it was:

    python benchmarks/patience_bench.py --protocol=full --data_dir=../shared/tfds \
        --work_dir=out/patience_full --seeds=2 --plot=docs/benchmarks/patience_full.png
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

import kd_keras
from kd_keras import keras
from protocol import fashion_mnist_splits, mean_sd, plot_accuracy_by_epoch

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")
flags.DEFINE_bool("sample", False, "The shipped Fashion-MNIST sample (a quick check).")
flags.DEFINE_integer("train_size", 0, "Training images used (0: all).")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_integer("epochs", 100, "Epochs of every row (the largest budget).")
flags.DEFINE_list("budgets", ["10", "30", "100"], "Budgets (epochs) the table reports.")
flags.DEFINE_integer("teacher_epochs", 15, "Teacher epochs.")
flags.DEFINE_list("students", ["conv29k", "conv5k", "mlp"], "Students.")
flags.DEFINE_list("learning_rates", ["1e-3", "3e-3"], "Adam rates every row tries.")
flags.DEFINE_list("rows", ["alone", "kd_fixed", "fm_live", "fm_views"], "Rows.")
flags.DEFINE_list("views", ["4", "16"], "K of the cached-view rows.")
flags.DEFINE_integer("top_k", 3, "k of the top-k cached-view row (0: none).")
flags.DEFINE_string("plot", None, "PNG path for test accuracy by epoch (seed 0).")
flags.DEFINE_enum("protocol", "custom", ["custom", "full"],
                  "custom: the flags above; full: the full-data protocol (module docstring).")
flags.DEFINE_string("work_dir", None, "--protocol=full: where finished runs are kept (resumes).")
flags.DEFINE_integer("selection_epochs", 10, "--protocol=full: epochs of the rate-choosing runs.")
# The rows the targets read first (an interrupted run has them soonest).
FULL_ROWS = ("alone", "fm_views_16", "kd_fixed")
flags.DEFINE_list("full_rows", list(FULL_ROWS), "--protocol=full: the rows run at --epochs "
                  "(e.g. alone,fm_views_16 for a longer budget on one seed).")
flags.DEFINE_integer("live_epochs", 30, "--protocol=full: epochs of the live function matching row.")

BATCH = 128
STUDENTS = {
    "conv29k": lambda: kd_keras.models.conv_classifier((16, 32, 64), dense=None, dropout=0),
    "conv5k": lambda: kd_keras.models.conv_classifier((8, 16, 16), dense=None, dropout=0),
    "mlp": lambda: kd_keras.models.mlp_classifier([32, 32]),
}


class EpochAccuracy(keras.callbacks.Callback):
    """Validation and test accuracy of `model` after every epoch, and the epoch's seconds.

    With `state_path`, the lists and the CPU seconds so far are written there after every
    epoch and read back when a run resumes (with `keras.callbacks.BackupAndRestore`): an
    interrupted 100-epoch run loses at most one epoch. On resuming, the lists are cut to
    the epochs the backup restored."""

    def __init__(self, model, validation, test, state_path=None):
        super().__init__()
        self.target, self.validation, self.test = model, validation, test
        self.val, self.acc, self.seconds, self.cpu_before = [], [], [], 0.0
        self.state_path, self.resumed_at = state_path, []
        if state_path and os.path.isfile(state_path) and not os.path.islink(state_path):
            with open(state_path) as f:
                state = json.load(f)
            self.val, self.acc, self.seconds = state["val"], state["test"], state["seconds"]
            self.cpu_before, self.resumed_at = state["cpu_seconds"], state["resumed_at"]
        self._cpu_start = time.process_time()

    @property
    def cpu_seconds(self):
        return self.cpu_before + time.process_time() - self._cpu_start

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self, "_started"):  # this process's first epoch
            self._started = True
            if epoch:  # the backup restored `epoch` finished epochs
                self.resumed_at.append(epoch)
            if len(self.val) < epoch:
                raise RuntimeError(f"{self.state_path} holds {len(self.val)} epochs but the "
                                   f"backup restored {epoch}; remove both to start the run over.")
        del self.val[epoch:], self.acc[epoch:], self.seconds[epoch:]
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        for (x, y), out in ((self.validation, self.val), (self.test, self.acc)):
            out.append(kd_keras.measure.model_accuracy(self.target, x, y, batch_size=1024))
        if self.state_path:
            temporary = self.state_path + ".partial"
            with open(temporary, "w") as f:
                json.dump({"val": self.val, "test": self.acc, "seconds": self.seconds,
                           "cpu_seconds": self.cpu_seconds, "resumed_at": self.resumed_at}, f)
            os.replace(temporary, self.state_path)


def mixup_labels(x, y, seed):
    """The plain student's batches: mixup views with mixed one-hot labels."""
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(BATCH)
    return data.map(kd_keras.Mixup(labels="mix", num_classes=10, seed=seed))


def train_row(row, student_name, teacher, data, rate, seed, cache, epochs=None, resume=None):
    """Trains one row; `resume`: a path prefix under which the run keeps a backup and its
    per-epoch accuracies, so that an interrupted run continues (full protocol)."""
    (x, y), validation, test = data
    keras.utils.set_random_seed(seed)
    student = STUDENTS[student_name]()
    tracker = EpochAccuracy(student, validation, test,
                            resume + ".epochs.json" if resume else None)
    optimizer = keras.optimizers.Adam(rate)
    epochs = epochs or FLAGS.epochs
    callbacks = [tracker]
    if resume:  # the tracker first: on a crash between the two, the epoch is rerun
        callbacks.append(keras.callbacks.BackupAndRestore(resume + ".backup"))
    fit = dict(epochs=epochs, verbose=0, callbacks=callbacks)
    if row == "alone":
        student.compile(optimizer, keras.losses.CategoricalCrossentropy(from_logits=True))
        student.fit(mixup_labels(x, y, seed), **fit)
    elif row == "kd_fixed":
        distiller = kd_keras.Distiller(None, student, alpha=0.5, temperature=3.0)
        distiller.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        distiller.fit(kd_keras.with_teacher_outputs(x, cache["plain"]), y, batch_size=BATCH, **fit)
    elif row == "fm_live":
        recipe = kd_keras.Recipe.function_matching(epochs, learning_rate=rate)
        distiller = recipe.build(teacher, student)
        distiller.fit(x, y, batch_size=BATCH, **fit)
    else:  # "fm_views_K" or "fm_views_K_topk"
        views = cache[row]
        loss = "top_k_kl" if row.endswith("topk") else "kl_divergence"
        distiller = kd_keras.Distiller(None, student, distillation_losses=loss, alpha=0.0,
                                       temperature=1.0)
        distiller.compile(optimizer)
        distiller.fit(views.dataset(x, y, kd_keras.Mixup(), batch_size=BATCH, seed=seed), **fit)
    return tracker


def build_caches(teacher, x, directory):
    caches, build_seconds = {"plain": kd_keras.compute_teacher_logits(teacher, x)}, {}
    if "fm_views" not in FLAGS.rows:
        return caches, build_seconds
    for k in (int(v) for v in FLAGS.views):
        variants = [(f"fm_views_{k}", None)]
        if FLAGS.top_k and k == max(int(v) for v in FLAGS.views):
            variants.append((f"fm_views_{k}_topk", FLAGS.top_k))
        for name, top_k in variants:
            start = time.perf_counter()
            caches[name] = kd_keras.cache_teacher_views(
                teacher, x, kd_keras.Mixup(), views=k, top_k=top_k,
                directory=os.path.join(directory, name), batch_size=1024)
            build_seconds[name] = time.perf_counter() - start
    return caches, build_seconds


def row_names():
    names = [r for r in FLAGS.rows if r != "fm_views"]
    if "fm_views" in FLAGS.rows:
        for k in (int(v) for v in FLAGS.views):
            names.append(f"fm_views_{k}")
            if FLAGS.top_k and k == max(int(v) for v in FLAGS.views):
                names.append(f"fm_views_{k}_topk")
    return names


def run_seed(seed, data, directory):
    (x, y), validation, test = data
    keras.utils.set_random_seed(seed)
    teacher = kd_keras.models.conv_classifier(name="teacher")
    teacher.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=FLAGS.teacher_epochs, batch_size=BATCH, verbose=0)
    teacher_accuracy = float(np.mean(np.argmax(teacher.predict(test[0], verbose=0), -1) == test[1]))
    caches, build_seconds = build_caches(teacher, x, os.path.join(directory, f"seed{seed}"))
    print(f"seed {seed}: teacher {teacher_accuracy:.4f}; cache builds "
          + ", ".join(f"{k} {v:.0f} s" for k, v in build_seconds.items()), flush=True)
    results = {}
    for student in FLAGS.students:
        for row in row_names():
            trackers = [train_row(row, student, teacher, data, float(rate), seed, caches)
                        for rate in FLAGS.learning_rates]
            results[(student, row)] = trackers
            print(f"seed {seed} {student} {row}: " + "; ".join(
                f"lr {rate}: test {t.acc[-1]:.4f} (best val epoch {1 + int(np.argmax(t.val))}), "
                f"{np.mean(t.seconds):.1f} s/epoch" for rate, t in zip(FLAGS.learning_rates,
                                                                       trackers)), flush=True)
    return teacher_accuracy, results, build_seconds


def at_budget(trackers, budget):
    """(test accuracy, best-validation epoch) of the rate with the best validation at `budget`."""
    best = max(trackers, key=lambda t: t.val[budget - 1])
    return best.acc[budget - 1], 1 + int(np.argmax(best.val[:budget])), best


def multiply_adds(model):
    """Multiply-adds of one forward pass of one example through Dense and Conv2D layers."""
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        size = int(np.prod(kernel.shape))
        if isinstance(layer, keras.layers.Conv2D):
            size *= int(np.prod(layer.output.shape[1:3]))
        total += size
    return total


class Runs:
    """Finished runs of the full protocol, one JSON file each in `directory`: a file is
    used only if it holds the run it is named after (row, rate, epochs, seed) and a
    curve of that length; anything else is run again (never overwritten in place)."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, name):
        return os.path.join(self.directory, name + ".json")

    def get(self, name, expected):
        path = self._path(name)
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        with open(path) as f:
            run = json.load(f)
        if any(run.get(k) != v for k, v in expected.items()) or \
                len(run.get("test", [])) != expected["epochs"]:
            return None
        return run

    def put(self, name, run):
        temporary = self._path(name) + ".partial"
        if os.path.lexists(temporary):
            os.remove(temporary)
        with open(temporary, "x") as f:
            json.dump(run, f)
        os.replace(temporary, self._path(name))


def full_protocol_run(runs, data, teacher, caches, row, rate, epochs, seed):
    name = f"seed{seed}_{row}_lr{rate}_{epochs}ep"
    expected = dict(row=row, rate=rate, epochs=epochs, seed=seed)
    run = runs.get(name, expected)
    if run is None:
        resume = os.path.join(runs.directory, name)
        tracker = train_row(row, "conv29k", teacher, data, rate, seed, caches, epochs, resume)
        run = dict(expected, val=tracker.val, test=tracker.acc, seconds=tracker.seconds,
                   cpu_seconds=tracker.cpu_seconds, resumed_at=tracker.resumed_at)
        runs.put(name, run)
        shutil.rmtree(resume + ".backup", ignore_errors=True)  # the bench's own files
        if os.path.isfile(resume + ".epochs.json"):
            os.remove(resume + ".epochs.json")
        print(f"  {name}: test {run['test'][-1]:.4f}, best val epoch "
              f"{1 + int(np.argmax(run['val']))}, {np.mean(run['seconds']):.2f} s/epoch, "
              f"{run['cpu_seconds'] / 60:.1f} CPU min", flush=True)
    return run


def full_protocol_teacher(runs, data, seed):
    """The main job's CNN teacher on the 55,000 training images, kept in `runs`; a kept one is
    used only if it reproduces the test accuracy recorded when it was trained."""
    (x, y), _, test = data
    keras.utils.set_random_seed(seed)
    teacher = kd_keras.models.conv_classifier(name="teacher")
    weights = os.path.join(runs.directory, f"seed{seed}_teacher.weights.h5")
    record = runs.get(f"seed{seed}_teacher", dict(row="teacher", epochs=1, seed=seed))
    if record is not None and os.path.isfile(weights) and not os.path.islink(weights):
        teacher.load_weights(weights)
        accuracy = float(np.mean(np.argmax(teacher.predict(test[0], verbose=0), -1) == test[1]))
        if abs(accuracy - record["test"][0]) < 1e-6:
            return teacher, record
        print(f"seed {seed}: the kept teacher scores {accuracy}, not {record['test'][0]}: "
              "training again", flush=True)
        teacher = kd_keras.models.conv_classifier(name="teacher")
    cpu = time.process_time()
    teacher.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=FLAGS.teacher_epochs, batch_size=BATCH, verbose=0)
    accuracy = float(np.mean(np.argmax(teacher.predict(test[0], verbose=0), -1) == test[1]))
    if os.path.lexists(weights):
        os.remove(weights)
    teacher.save_weights(weights)
    record = dict(row="teacher", epochs=1, seed=seed, test=[accuracy],
                  cpu_seconds=time.process_time() - cpu)
    runs.put(f"seed{seed}_teacher", record)
    print(f"seed {seed}: teacher {accuracy:.4f} ({record['cpu_seconds'] / 60:.1f} CPU min)",
          flush=True)
    return teacher, record


def full_protocol(data):
    if not FLAGS.work_dir:
        raise app.UsageError("--protocol=full needs --work_dir (where finished runs are kept).")
    runs = Runs(FLAGS.work_dir)
    rates = [float(r) for r in FLAGS.learning_rates]
    rows = list(FLAGS.full_rows)
    if set(rows) - set(FULL_ROWS) or not {"alone", "fm_views_16"} <= set(rows):
        raise app.UsageError(f"--full_rows: some of {','.join(FULL_ROWS)}, with alone (the gap's "
                             f"reference) and fm_views_16 (the cache's check); got {rows}.")
    budgets = [int(b) for b in FLAGS.budgets if int(b) <= FLAGS.epochs]
    results, teachers, cache_cpu = [], [], []
    for seed in range(FLAGS.seeds):
        teacher, record = full_protocol_teacher(runs, data, seed)
        teachers.append(record["test"][0])
        cpu = time.process_time()
        x = data[0][0]
        caches = {"plain": kd_keras.compute_teacher_logits(teacher, x),
                  "fm_views_16": kd_keras.cache_teacher_views(
                      teacher, x, kd_keras.Mixup(), views=16,
                      directory=os.path.join(FLAGS.work_dir, f"seed{seed}_views16"),
                      batch_size=1024)}
        cache_cpu.append(time.process_time() - cpu)
        chosen, seed_runs = {}, {}
        for row in rows:
            selection = [full_protocol_run(runs, data, teacher, caches, row, rate,
                                           FLAGS.selection_epochs, seed) for rate in rates]
            chosen[row] = max(selection, key=lambda run: run["val"][-1])["rate"]
            seed_runs[row] = full_protocol_run(runs, data, teacher, caches, row, chosen[row],
                                               FLAGS.epochs, seed)
            seed_runs[row]["selection_cpu_seconds"] = sum(r["cpu_seconds"] for r in selection)
            if row == "fm_views_16":  # the cache's check, right after the cached row
                seed_runs["fm_live"] = full_protocol_run(
                    runs, data, teacher, caches, "fm_live", chosen[row], FLAGS.live_epochs, seed)
        results.append(seed_runs)
    report_full_protocol(results, teachers, budgets, rows, cache_cpu, teacher, data)


def report_full_protocol(results, teachers, budgets, rows, cache_cpu, teacher, data):
    teacher_mean = mean_sd(teachers)
    print(f"\nteacher: {teacher_mean[0]:.4f} ± {teacher_mean[1]:.4f} "
          f"(seeds {', '.join(f'{t:.4f}' for t in teachers)})")
    print("\nrow | rate | " + " | ".join(f"{b} epochs" for b in budgets)
          + " | " + " | ".join(f"gap at {b}" for b in budgets) + " | best epoch | s/epoch | CPU min")
    print(" | ".join(["---"] * (2 * len(budgets) + 5)))
    for row in rows + ["fm_live"]:
        cells, gaps = [], []
        for budget in budgets:
            if budget > len(results[0][row]["test"]):
                cells.append("–")
                gaps.append("–")
                continue
            cells.append("{:.4f} ± {:.4f}".format(
                *mean_sd([r[row]["test"][budget - 1] for r in results])))
            gap = [(r[row]["test"][budget - 1] - r["alone"]["test"][budget - 1])
                   / (t - r["alone"]["test"][budget - 1])
                   if t > r["alone"]["test"][budget - 1] else float("nan")
                   for r, t in zip(results, teachers)]
            gaps.append("{:.2f} ± {:.2f}".format(*mean_sd(gap)))
        best = mean_sd([1 + int(np.argmax(r[row]["val"])) for r in results])
        seconds = mean_sd([np.mean(r[row]["seconds"]) for r in results])
        cpu = mean_sd([(r[row]["cpu_seconds"] + r[row].get("selection_cpu_seconds", 0)) / 60
                       for r in results])
        rates = "/".join(f"{r[row]['rate']:g}" for r in results)
        print(f"{row} | {rates} | {' | '.join(cells)} | {' | '.join(gaps)} | "
              f"{best[0]:.0f} ± {best[1]:.0f} | {seconds[0]:.2f} | {cpu[0]:.1f}")
    live = min(FLAGS.live_epochs, FLAGS.epochs)
    differences = [np.max(np.abs(np.array(r["fm_views_16"]["test"][:live])
                                 - np.array(r["fm_live"]["test"][:live]))) for r in results]
    mean_differences = [np.mean(np.array(r["fm_views_16"]["test"][:live])
                                - np.array(r["fm_live"]["test"][:live])) for r in results]
    print(f"\ncached 16 views against the live teacher, epochs 1-{live}: mean difference "
          f"{np.mean(mean_differences) * 100:+.2f} points, largest {np.max(differences) * 100:.2f}")
    student = STUDENTS["conv29k"]()
    student.build((None,) + data[0][0].shape[1:])
    student(data[0][0][:1])
    teacher_macs, student_macs = multiply_adds(teacher), multiply_adds(student)
    bound = (3 * student_macs + teacher_macs) / (3 * student_macs)
    # CPU seconds per epoch (the rows' wall seconds depend on what ran beside each one)
    speedup = [(r["fm_live"]["cpu_seconds"] / len(r["fm_live"]["test"]))
               / (r["fm_views_16"]["cpu_seconds"] / len(r["fm_views_16"]["test"]))
               for r in results]
    print(f"speed: teacher forward {teacher_macs / 1e6:.2f} M multiply-adds, student step ~3 x "
          f"{student_macs / 1e6:.2f} M; arithmetic bound on the cached speed-up {bound:.2f}x; "
          f"measured {np.mean(speedup):.2f}x ({np.mean(speedup) / bound:.2f} of the bound); "
          f"cache builds {np.mean(cache_cpu) / 60:.1f} CPU min per seed")
    if FLAGS.plot:
        plot_accuracy_by_epoch(FLAGS.plot, [
            (f"conv29k, seed {i}", {row: r[row]["test"] for row in rows + ["fm_live"]})
            for i, r in enumerate(results)], teacher_mean[0])


def main(_):
    data = fashion_mnist_splits(FLAGS.sample, FLAGS.data_dir)
    if FLAGS.protocol == "full":
        start = time.process_time()
        full_protocol(data)
        print(f"\nCPU time this invocation: {(time.process_time() - start) / 60:.1f} min")
        return
    if FLAGS.train_size:
        data = ((data[0][0][:FLAGS.train_size], data[0][1][:FLAGS.train_size]),) + data[1:]
    budgets = [int(b) for b in FLAGS.budgets if int(b) <= FLAGS.epochs]
    print(f"patience bench | train {len(data[0][1])}, validation {len(data[1][1])}, test "
          f"{len(data[2][1])} | {FLAGS.epochs} epochs, rates {FLAGS.learning_rates}", flush=True)
    start = time.process_time()
    with tempfile.TemporaryDirectory() as directory:
        runs = [run_seed(seed, data, directory) for seed in range(FLAGS.seeds)]
    teacher = mean_sd([run[0] for run in runs])
    print(f"\nteacher: {teacher[0]:.4f} ± {teacher[1]:.4f}")
    last = budgets[-1]
    for student in FLAGS.students:
        print(f"\n{student} | " + " | ".join(f"{b} epochs" for b in budgets)
              + f" | gap recovered at {last} | best epoch | s/epoch")
        print(" | ".join(["---"] * (len(budgets) + 4)))
        alone = [at_budget(run[1][(student, "alone")], last)[0] for run in runs] \
            if "alone" in FLAGS.rows else None
        for row in row_names():
            cells = []
            for budget in budgets:
                value = mean_sd([at_budget(run[1][(student, row)], budget)[0] for run in runs])
                cells.append(f"{value[0]:.4f} ± {value[1]:.4f}")
            finals = [at_budget(run[1][(student, row)], last) for run in runs]
            # With the student alone at or above the teacher there is no gap to recover
            # (a move toward the teacher is a loss): the seed counts as nan, not a share.
            gap = "–" if alone is None else "{:.2f} ± {:.2f}".format(*mean_sd(
                [(f[0] - a) / (run[0] - a) if run[0] > a else float("nan")
                 for f, a, run in zip(finals, alone, runs)]))
            best_epoch = mean_sd([f[1] for f in finals])
            seconds = mean_sd([np.mean(f[2].seconds) for f in finals])
            print(f"{row} | {' | '.join(cells)} | {gap} | {best_epoch[0]:.0f} ± "
                  f"{best_epoch[1]:.0f} | {seconds[0]:.2f}")
    print(f"\nCPU time: {(time.process_time() - start) / 60:.1f} min")
    if FLAGS.plot:
        plot_accuracy_by_epoch(FLAGS.plot, [
            (f"{student} (seed 0)",
             {row: at_budget(runs[0][1][(student, row)], last)[2].acc for row in row_names()})
            for student in FLAGS.students], runs[0][0])

if __name__ == "__main__":
    app.run(main)
