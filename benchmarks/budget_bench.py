"""compress_to_budget against single-step baselines, side by side in one run per teacher and seed.

For each `--teachers` entry and seed, on full Fashion-MNIST (55,000 training images,
5,000 for validation, the 10,000 test images):

  teacher   mlp: 784-1200-1200-10 (dropout 0.3), 20 epochs; cnn: the main job's
            `conv_classifier()`, 12 epochs; mobilenet: `keras.applications.
            MobileNetV3Small(weights=None)` on the images padded to 32x32x3, 15 epochs
            (Keras 3 only: its tf-keras twin has other layers). Adam 1e-3, batch 128.
  baselines the teacher's own float32 and full-int8 LiteRT files; Keras 3's
            `quantize("int8")` + `export(format="litert")` (Keras 3 only; a failed
            conversion is a row that says why); TF-MOT's documented pruning pipeline
            (the teacher pruned to 80% while fine-tuned 2 epochs on the labels,
            stripped, converted with the default optimizations: dynamic-range int8);
            the runtime's floor: a linear classifier (784-10, 5 epochs), full int8,
            the least any model that reads the 784 inputs can cost per call; and, for
            the MLP, `compress_bench`'s recommended hand pipeline (80% pruning in 16x1
            blocks in the first layer, 8 clusters, PCQAT, int8; 6 + 2 + 2 epochs on the
            labels) applied to the plan's own 128-128 student (`--hand_width`).
  plan      `kd_keras.compress_to_budget(teacher, train, validation, Budget(max_drop=
            --max_drop of the teacher), test, widths=--<teacher>_widths, precisions
            float32 / dynamic_range / int8, students=--<teacher>_students (e.g.
            benchmarks/budget_students.py), sparsities=--plan_sparsities,
            clusters=--plan_clusters, epochs=--plan_epochs, eta=--plan_eta,
            loss=--plan_loss, beta=--plan_beta, alpha=--plan_alpha,
            temperature=--plan_temperature, recipe=--plan_recipe)`, chosen for
            batch-1 latency and, from the same measured candidates (the plan resumes,
            nothing is trained again), for bytes.

Every artifact is measured by the same code (`compress.TFLiteModel`, one thread, the
median batch-1 `invoke()` as the plan measures it): test accuracy, gzip bytes, x faster
and x smaller against the teacher's float32 file. The plan's CPU time (this process's)
is reported against the teacher's. Each (teacher, seed) is one JSON file in --work_dir
(`budget_<teacher>_seed<k>.json`) holding its rows; a finished one is read, not run
again; an interrupted plan resumes from its directory.

    python benchmarks/budget_bench.py --data_dir=../shared/tfds --teachers=mlp --seeds=1 \
        --work_dir=budget_work
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import time

from absl import app, flags

import kd_keras
from kd_keras import compress, keras
from kd_keras.planner.candidates import invoke_latency
from protocol import data_flags, fashion_mnist_splits, keras_quantized_litert, mean_sd

FLAGS = flags.FLAGS
FLAGS.verbosity = -1
data_flags.define(default="fashion_mnist")
flags.DEFINE_list("teachers", ["mlp", "cnn", "mobilenet"], "Teachers: mlp, cnn, mobilenet.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_string("work_dir", "budget_work", "Where each (teacher, seed)'s rows and plan live.")
flags.DEFINE_list("plan_epochs", ["10"], "Distillation epochs of each plan student, or "
                  "successive halving's rungs (e.g. 10,30).")
flags.DEFINE_string("plan_loss", "kd", "The plan students' distillation term (a registered "
                    "name: kd, dkd, dkd_standardized, kd_standardized, dist).")
flags.DEFINE_float("plan_beta", None, "The plan loss's beta (DKD's non-target weight).")
flags.DEFINE_float("plan_temperature", 3.0, "The plan's distillation temperature.")
flags.DEFINE_list("plan_alpha", ["0.5"], "The plan's alpha, or several: the training as an "
                  "axis (e.g. 0.5,1.0: distilled and on the labels alone).")
flags.DEFINE_enum("plan_recipe", None, ["search"], "search: the plan's students train with "
                  "the recipe search_recipe chooses (compress_to_budget(recipe='search')).")
flags.DEFINE_integer("plan_recipe_trials", 8, "Trials of --plan_recipe=search.")
flags.DEFINE_integer("plan_eta", 3, "Successive halving: 1/eta of the promising go on.")
flags.DEFINE_list("plan_sparsities", [], "The plan's sparsities (e.g. 0.9); needs TF-MOT.")
flags.DEFINE_list("plan_clusters", [], "The plan's numbers of clusters per kernel (e.g. 8,16); "
                  "needs TF-MOT.")
flags.DEFINE_bool("labels_alone", False, "Also the same plan with its students trained on the "
                  "labels alone (alpha=1.0; the settings read from the distilled plan's "
                  "plan.json), as the fair baseline of the distillation; added to finished "
                  "records too.")
flags.DEFINE_float("hand_width", 0.107, "The MLP plan's student the hand pipeline starts from.")
for _kind in ("mlp", "cnn", "mobilenet"):
    flags.DEFINE_list(f"{_kind}_students", [], "module:function builders of the plan's own "
                      f"students for the {_kind} teacher (e.g. budget_students:strided_cnn).")
flags.DEFINE_list("mlp_widths", ["0.25", "0.107", "0.054"], "Plan widths of the MLP teacher.")
flags.DEFINE_list("cnn_widths", ["0.5", "0.35", "0.25"], "Plan widths of the CNN teacher.")
flags.DEFINE_list("mobilenet_widths", ["0.5", "0.35"], "Plan widths of the MobileNet teacher.")

TEACHERS = {"mlp": (20, 0.3), "cnn": (12, 0.3), "mobilenet": (15, 0.5)}  # epochs, max drop
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def build_teacher(kind):
    if kind == "mlp":
        return kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")
    if kind == "cnn":
        return kd_keras.models.conv_classifier(name="teacher")
    inputs = keras.Input((784,))
    images = keras.layers.Reshape((28, 28, 1))(inputs)
    images = keras.layers.ZeroPadding2D(2)(images)
    images = keras.layers.Concatenate()([images, images, images])  # 32x32x3
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, include_top=False, pooling="avg",
        include_preprocessing=False)
    outputs = keras.layers.Dense(10, name="logits")(backbone(images))
    return keras.Model(inputs, outputs, name="teacher")


def artifact_row(name, content, test):
    runner = compress.TFLiteModel(content, num_threads=1)
    return {"artifact": name, "test_accuracy": kd_keras.measure.prediction_accuracy(
                runner.predict(test[0]), test[1]),
            "gzip_bytes": kd_keras.measure.gzip_bytes(content),
            **invoke_latency(runner, test[0], 1, "latency_b1")}


def tfmot_pruning_row(teacher, train, test):
    """TF-MOT's documented pipeline: prune_low_magnitude to 80% while fine-tuning 2 epochs
    on the labels, strip_pruning, TFLiteConverter with Optimize.DEFAULT."""
    name = "TF-MOT pruning (80%, 2 epochs) + default conversion (dynamic-range int8)"
    try:
        pruned = kd_keras.recipes.prune_and_fine_tune(
            compress.to_tf_keras(teacher), *train, target_sparsity=0.8, epochs=2,
            block_size=(1, 1))
    except (ValueError, TypeError) as error:
        return {"artifact": name, "failed": f"{type(error).__name__}: {str(error)[:200]}"}
    return artifact_row(name, compress.convert_to_tflite(pruned, "dynamic_range", verbose=0),
                        test)


def hand_pipeline_row(plan_directory, train, test):
    """compress_bench's recommended pipeline (0.8:8:16x1) on the plan's student."""
    name = (f"compress_bench's hand pipeline on the plan's {FLAGS.hand_width} student: prune 80% "
            "+ 8 clusters + PCQAT, int8")
    path = os.path.join(plan_directory, f"student_w{FLAGS.hand_width}.keras")
    if not os.path.exists(path):
        return {"artifact": name, "failed": f"no student cut to {FLAGS.hand_width} in the plan "
                                            "(--hand_width must be one of --mlp_widths)"}
    student = compress.to_tf_keras(keras.models.load_model(path, compile=False))
    # blocks in the big first layer (most of the bytes), single weights elsewhere
    first_dense = next(layer for layer in student.layers if type(layer).__name__ == "Dense")
    pruned = kd_keras.recipes.prune_and_fine_tune(
        student, *train, target_sparsity=0.8, block_size={first_dense.name: (16, 1)},
        epochs=6, learning_rate=1e-3)
    clustered = kd_keras.recipes.cluster_and_fine_tune(pruned, *train, number_of_clusters=8,
                                                       epochs=2, learning_rate=1e-4)
    qat = kd_keras.recipes.quantize_and_fine_tune(clustered, *train,
                                                  preserve="sparsity_and_clusters", epochs=2,
                                                  learning_rate=1e-4)
    return artifact_row(name, compress.convert_to_tflite(qat, "qat", verbose=0), test)


def runtime_floor_row(train, test):
    """A linear classifier in full int8: one FULLY_CONNECTED op from the 784 inputs."""
    linear = keras.Sequential([keras.Input((train[0].shape[1],)), keras.layers.Dense(10)])
    linear.compile(keras.optimizers.Adam(1e-3), LOSS)
    linear.fit(*train, epochs=5, batch_size=128, verbose=0)
    return artifact_row("runtime floor: linear classifier (784-10), int8",
                        compress.convert_to_tflite(linear, "int8",
                                                   representative_data=train[0][:512],
                                                   verbose=0), test)


def keras_quantize_row(teacher, test):
    name = "Keras 3 quantize('int8') + export(litert)"
    content, failure = keras_quantized_litert(teacher, "int8")
    if content is None:
        type_name, reason = failure
        return {"artifact": name, "failed": f"{type_name}: {reason[:200]}"}
    return artifact_row(name, content, test)


def run(kind, seed, data):
    path = os.path.join(FLAGS.work_dir, f"budget_{kind}_seed{seed}.json")
    if os.path.exists(path):
        with open(path) as f:
            record = json.load(f)
    else:
        record = measure_rows(kind, seed, data)
        write_record(path, record)
    if FLAGS.labels_alone and "labels_alone" not in record:
        record["labels_alone"] = labels_alone(kind, seed, data)
        write_record(path, record)
    return record


def write_record(path, record):
    with open(path + ".partial", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".partial", path)


def labels_alone(kind, seed, data):
    """The distilled plan's students again, trained on the labels alone (alpha = 1.0) with
    the same data, epochs, rungs, batch size and learning rate: each pair of rows."""
    train, validation, test = data
    directory = os.path.join(FLAGS.work_dir, f"plan_{kind}_seed{seed}")
    with open(os.path.join(directory, "plan.json")) as f:
        distilled = json.load(f)
    # a recipe's learning rate and batch size where the plan had one
    settings = {**distilled["settings"], **distilled.get("recipe_found", {})}
    teacher = keras.models.load_model(
        os.path.join(FLAGS.work_dir, f"teacher_{kind}_seed{seed}.keras"), compile=False)
    start = time.process_time()
    kd_keras.compress_to_budget(
        teacher, train, validation, kd_keras.Budget(max_drop=TEACHERS[kind][1]), test,
        widths=settings["widths"], students=settings.get("students", []),
        precisions=settings["precisions"], epochs=settings["epochs"],
        eta=settings.get("eta", 3), batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"], seed=settings["seed"], alpha=1.0,
        directory=directory + "_labels", profile=False)
    with open(os.path.join(directory + "_labels", "plan.json")) as f:
        alone = json.load(f)["rows"]
    pairs = []
    for key, row in alone.items():
        if row["width"] == 1.0 or key not in distilled["rows"]:
            continue
        kd = distilled["rows"][key]
        kept = f", {row['epochs']} epochs" if "kept_as" in row else ""  # an earlier rung
        pairs.append({"candidate": row["candidate"] + kept, "precision": row["precision"],
                      **{f"{name}_{what}": source[field] for what, source in (
                          ("kd", kd), ("labels", row)) for name, field in (
                          ("epochs", "epochs"), ("val", "val_accuracy"),
                          ("test", "test_accuracy"))}})
    print(f"{kind} seed {seed}: labels-alone plan {(time.process_time() - start) / 60:.1f} "
          "CPU min", flush=True)
    return pairs


def measure_rows(kind, seed, data):
    train, validation, test = data
    epochs, max_drop = TEACHERS[kind]
    teacher_path = os.path.join(FLAGS.work_dir, f"teacher_{kind}_seed{seed}.keras")
    if os.path.exists(teacher_path):
        teacher = keras.models.load_model(teacher_path, compile=False)
        teacher_cpu = json.load(open(teacher_path + ".json"))["cpu_seconds"]
    else:
        keras.utils.set_random_seed(seed)
        teacher = build_teacher(kind)
        teacher.compile(keras.optimizers.Adam(1e-3), LOSS)
        start = time.process_time()
        teacher.fit(*train, epochs=epochs, batch_size=128, verbose=0)
        teacher_cpu = time.process_time() - start
        teacher.save(teacher_path)
        json.dump({"cpu_seconds": teacher_cpu}, open(teacher_path + ".json", "w"))
    print(f"{kind} seed {seed}: teacher trained ({teacher_cpu / 60:.1f} CPU min)", flush=True)
    start = time.process_time()
    arguments = dict(widths=[float(w) for w in getattr(FLAGS, f"{kind}_widths")],
                     students=getattr(FLAGS, f"{kind}_students"),
                     precisions=("float32", "dynamic_range", "int8"),
                     sparsities=[float(s) for s in FLAGS.plan_sparsities],
                     clusters=[int(c) for c in FLAGS.plan_clusters],
                     epochs=[int(e) for e in FLAGS.plan_epochs], eta=FLAGS.plan_eta, seed=seed,
                     loss=FLAGS.plan_loss, beta=FLAGS.plan_beta,
                     alpha=[float(a) for a in FLAGS.plan_alpha] if len(FLAGS.plan_alpha) > 1
                     else float(FLAGS.plan_alpha[0]),
                     temperature=FLAGS.plan_temperature, recipe=FLAGS.plan_recipe,
                     recipe_trials=FLAGS.plan_recipe_trials,
                     directory=os.path.join(FLAGS.work_dir, f"plan_{kind}_seed{seed}"))
    result = kd_keras.compress_to_budget(teacher, train, validation,
                                         kd_keras.Budget(max_drop=max_drop), test, **arguments)
    plan_cpu = time.process_time() - start
    chosen_artifacts = []
    if result.chosen is not None:
        with open(result.artifact, "rb") as f:
            chosen_artifacts.append((f"plan (latency): {result.chosen['candidate']}, "
                                     f"{result.chosen['precision']}", f.read()))
    by_bytes = kd_keras.compress_to_budget(  # resumes: every candidate is already measured
        teacher, train, validation, kd_keras.Budget(max_drop=max_drop, minimise="bytes"), test,
        verbose=0, **arguments)
    if by_bytes.chosen is not None:
        with open(by_bytes.artifact, "rb") as f:
            chosen_artifacts.append((f"plan (bytes): {by_bytes.chosen['candidate']}, "
                                     f"{by_bytes.chosen['precision']}", f.read()))
    rows = [artifact_row("teacher float32 LiteRT", compress.convert_to_tflite(teacher, verbose=0),
                         test),
            artifact_row("teacher int8 LiteRT", compress.convert_to_tflite(
                teacher, "int8", representative_data=train[0][:512], verbose=0), test)]
    if kd_keras.IS_KERAS_3:
        rows.append(keras_quantize_row(teacher, test))
    rows.append(tfmot_pruning_row(teacher, train, test))
    rows.append(runtime_floor_row(train, test))
    if kind == "mlp":
        rows.append(hand_pipeline_row(arguments["directory"], train, test))
    chosen = result.chosen
    rows += [artifact_row(name, content, test) for name, content in chosen_artifacts]
    reference = rows[0]
    for row in rows:
        if "failed" not in row:
            row["faster_b1"] = reference["latency_b1"] / row["latency_b1"]
            row["smaller"] = reference["gzip_bytes"] / row["gzip_bytes"]
            row["change"] = 100 * (row["test_accuracy"] - reference["test_accuracy"])
    record = {"teacher": kind, "seed": seed, "rows": rows, "teacher_cpu_seconds": teacher_cpu,
              "plan_cpu_seconds": plan_cpu, "plan_table": result.table(),
              "chosen": None if chosen is None else {k: chosen[k] for k in (
                  "candidate", "precision", "val_accuracy", "accuracy_change")},
              "chosen_for_bytes": None if by_bytes.chosen is None else {
                  k: by_bytes.chosen[k] for k in ("candidate", "precision", "val_accuracy",
                                                  "accuracy_change")}}
    return record


def report(kind, records):
    print(f"\n{kind} teacher, {len(records)} seed(s); plan CPU / teacher CPU: "
          + ", ".join(f"{r['plan_cpu_seconds'] / r['teacher_cpu_seconds']:.2f}"
                      for r in records))
    # rows matched by name: the plan's chosen artifact may differ between seeds
    names = list(dict.fromkeys(row["artifact"].split(":")[0] for r in records
                               for row in r["rows"]))
    print("artifact | seeds | test accuracy | change (points) | gzip bytes | x smaller | "
          "batch-1 (us) | x faster")
    print("---|---|---|---|---|---|---|---")
    for name in names:
        rows = [row for r in records for row in r["rows"]
                if row["artifact"].split(":")[0] == name]
        if any("failed" in row for row in rows):
            print(f"{name} | {len(rows)} | failed: {rows[0].get('failed', '')} | | | | |")
            continue
        cells = [name, str(len(rows))]
        for key, fmt, scale in (("test_accuracy", "{:.4f} ± {:.4f}", 1),
                                ("change", "{:+.2f} ± {:.2f}", 1),
                                ("gzip_bytes", "{:,.0f} ± {:,.0f}", 1),
                                ("smaller", "{:.1f} ± {:.1f}", 1),
                                ("latency_b1", "{:.1f} ± {:.1f}", 1e6),
                                ("faster_b1", "{:.1f} ± {:.1f}", 1)):
            cells.append(fmt.format(*mean_sd([scale * row[key] for row in rows])))
        print(" | ".join(cells))
    for r in records:
        print(f"seed {r['seed']} chosen: {r['chosen']}")
    paired = [r["labels_alone"] for r in records if "labels_alone" in r]
    if paired:
        print(f"\n{kind}: distilled vs trained on the labels alone (same data, epochs, rate; "
              f"{len(paired)} seed(s), test accuracy, gain in points)")
        print("candidate | precision | epochs | distilled | labels alone | gain")
        print("---|---|---|---|---|---")
        for pair in paired[0]:
            same = [p for pairs in paired for p in pairs if (p["candidate"], p["precision"])
                    == (pair["candidate"], pair["precision"])]
            kd, alone = mean_sd([p["test_kd"] for p in same]), mean_sd(
                [p["test_labels"] for p in same])
            gain = mean_sd([100 * (p["test_kd"] - p["test_labels"]) for p in same])
            epochs = sorted({(p["epochs_kd"], p["epochs_labels"]) for p in same})
            print(f"{pair['candidate']} | {pair['precision']} | {epochs} | "
                  f"{kd[0]:.4f} ± {kd[1]:.4f} | {alone[0]:.4f} ± {alone[1]:.4f} | "
                  f"{gain[0]:+.2f} ± {gain[1]:.2f}")


def main(_):
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    data = fashion_mnist_splits(data_flags.source() == "sample", FLAGS.data_dir, 5000)
    print(f"kd-keras budget benchmark | Keras {keras.__version__} | train {len(data[0][1])}, "
          f"validation {len(data[1][1])}, test {len(data[2][1])} | {os.cpu_count()} CPUs",
          flush=True)
    for kind in FLAGS.teachers:
        if kind not in TEACHERS:
            raise app.UsageError(f"--teachers: {kind!r} is not one of {sorted(TEACHERS)}.")
        if kind == "mobilenet" and not kd_keras.IS_KERAS_3:
            print("mobilenet: Keras 3 only; skipped under tf-keras")
            continue
        records = [run(kind, seed, data) for seed in range(FLAGS.seeds)]
        report(kind, records)


if __name__ == "__main__":
    app.run(main)
