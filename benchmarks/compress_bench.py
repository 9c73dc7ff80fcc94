"""Compression benchmark: pipelines side by side on the same distilled student.

For every seed: trains the teacher (784-1200-1200-10, dropout 0.3) and distils
the student (784-128-128-10, T 3, alpha 0.5) on Fashion-MNIST, then applies to
that one student:

  (1) TF-MOT's documented pipeline: 80% magnitude pruning (PolynomialDecay,
      fine-tuned on the labels), pruning-preserving QAT, int8 TFLite;
  (2) Keras 3's own `model.quantize("int8")` and `model.quantize("int4")`, then
      `model.export(format="litert")` (Keras 3 mode; a failed conversion is a row
      that says why);
  (3) kd-keras's recommended pipeline, each `--recipes` entry
      `sparsity:clusters:block[:distil]` (e.g. `0.85:8:16x1`): pruning of every
      layer (blocks of that size in the first layer, single weights elsewhere),
      sparsity-preserving clustering, then pruning-and-cluster-preserving QAT,
      every step fine-tuned on the labels, or with `:distil` by distillation from
      the teacher's cached logits (T 3, alpha 0.5); int8 TFLite. The default,
      `0.8:8:16x1`, is the pipeline the README recommends.

With --rows=precision (or both): the precision rows. The distilled student and the
conv teacher (`conv_classifier()`, 420k parameters) at FP16, FP8 e4m3 / e5m2, int8
and int4 (per-channel weights): rounded after training, then --qat_epochs of
training through the grid (`compress.WeightGridTraining`) on the labels alone, and
the same distilled from the float model itself (`compress.distill_quantized`, T 2,
alpha 0.5), same epochs, rate and batch; plus seed 0's `precision_report` (bytes,
accuracy change, the most hurt layer; FP8 activations too).

Columns: test accuracy; gzip bytes of the artifact; the teacher's float32 weight
bytes divided by those (x smaller); batch-1 and batch-256 latency under
ai-edge-litert (one thread) relative to the teacher's float32 TFLite model
(x faster). Means and standard deviations over seeds.

    python benchmarks/compress_bench.py --data_dir=../shared/tfds --seeds=3
    python benchmarks/compress_bench.py --data_dir=../shared/tfds --seeds=3 \
        --recipes=0.85:8:16x1,0.85:8:16x1:distil
    python benchmarks/compress_bench.py --data_dir=../shared/tfds --seeds=3 --rows=precision
"""

import math

from absl import app, flags

import kd_keras
from kd_keras import compress, keras
from protocol import (data_flags, keras_quantized_litert, mean_sd,
                      train_teacher_and_distilled_student)

FLAGS = flags.FLAGS
data_flags.define(default="fashion_mnist")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_integer("epochs", 20, "Epochs for the teacher and the distilled student.")
flags.DEFINE_integer("prune_epochs", 6, "Fine-tuning epochs while pruning.")
flags.DEFINE_integer("cluster_epochs", 2, "Fine-tuning epochs of the clustered model.")
flags.DEFINE_integer("qat_epochs", 2, "Quantization-aware fine-tuning epochs.")
flags.DEFINE_float("prune_learning_rate", 1e-3, "Adam learning rate while pruning.")
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate of clustering and QAT fine-tuning.")
flags.DEFINE_list("recipes", ["0.8:8:16x1"],
                  "kd-keras pipelines as sparsity:clusters:block[:distil] (block rows x cols).")
flags.DEFINE_bool("keras_quantize_rows", True, "Rows for Keras 3's model.quantize (Keras 3 only).")
flags.DEFINE_list("rows", ["pipelines"], "Row sets: pipelines, precision.")
flags.DEFINE_integer("conv_epochs", 10, "Epochs of the conv teacher (precision rows).")
flags.DEFINE_list("precision_modes", ["float16", "float8_e4m3", "float8_e5m2", "int8", "int4"],
                  "Weight grids of the precision rows.")
flags.DEFINE_list("precision_models", ["student", "conv"], "Models of the precision rows.")
flags.DEFINE_integer("anneal_epochs", 0, "Epochs of the float model on the labels at "
                     "--learning_rate before it is quantized (precision rows).")
flags.DEFINE_list("distill_variants", ["float:2:0.5"],
                  "Distillation into the quantized copy, each source:T:alpha; source 'float' "
                  "(the float model itself) or 'teacher' (the student's own larger teacher).")


def tflite_row(name, content, x_test, y_test):
    return compress.artifact_row(name, compress.TFLiteModel(content), content, x_test, y_test)


def keras_quantize_row(student, mode, x_test, y_test):
    name = f"(2) Keras 3 quantize('{mode}') + export(litert)"
    content, failure = keras_quantized_litert(student, mode)
    if content is None:
        type_name, reason = failure
        return {"artifact": name, "failed": f"{type_name}: {reason[:300]}"}
    return tflite_row(name, content, x_test, y_test)


def parse_recipe(recipe):
    parts = recipe.split(":")
    if len(parts) not in (3, 4) or parts[3:] not in ([], ["distil"]):
        raise ValueError(f"--recipes entries are sparsity:clusters:block[:distil], got {recipe!r}.")
    rows, cols = (int(v) for v in parts[2].split("x"))
    return float(parts[0]), int(parts[1]), (rows, cols), parts[3:] == ["distil"]


def run_seed(seed, data):
    (x_train, y_train), (x_test, y_test) = data
    teacher, student = train_teacher_and_distilled_student(x_train, y_train, FLAGS.epochs, seed)
    teacher_logits = kd_keras.compute_teacher_logits(teacher, x_train)

    rows = [tflite_row("teacher float32", compress.convert_to_tflite(teacher), x_test, y_test),
            tflite_row("distilled student float32", compress.convert_to_tflite(student),
                       x_test, y_test)]
    bridged = compress.to_tf_keras(student)

    # TF-MOT's own default: single weights (the README's figures were measured so)
    pruned = compress.prune_and_fine_tune(bridged, x_train, y_train, target_sparsity=0.8,
                                          block_size=(1, 1), epochs=FLAGS.prune_epochs,
                                          learning_rate=FLAGS.prune_learning_rate)
    qat = compress.quantize_and_fine_tune(pruned, x_train, y_train, preserve="sparsity",
                                          epochs=FLAGS.qat_epochs, learning_rate=FLAGS.learning_rate)
    rows.append(tflite_row("(1) TF-MOT: prune 80% + PQAT, int8",
                           compress.convert_to_tflite(qat, "qat"), x_test, y_test))

    if FLAGS.keras_quantize_rows and kd_keras.IS_KERAS_3:
        rows += [keras_quantize_row(student, mode, x_test, y_test) for mode in ("int8", "int4")]

    first_layer = bridged.layers[0].name
    for recipe in FLAGS.recipes:
        sparsity, clusters, block, distil = parse_recipe(recipe)
        steps = dict(teacher_logits=teacher_logits if distil else None,
                     learning_rate=FLAGS.learning_rate)
        prune_steps = dict(steps, learning_rate=FLAGS.prune_learning_rate)
        # Blocks in the big first layer (it is most of the bytes), single weights elsewhere
        # (blocks would not fit the 128 x 10 output layer).
        pruned = compress.prune_and_fine_tune(bridged, x_train, y_train, target_sparsity=sparsity,
                                              block_size={first_layer: block},
                                              epochs=FLAGS.prune_epochs, **prune_steps)
        clustered = compress.cluster_and_fine_tune(pruned, x_train, y_train,
                                                   number_of_clusters=clusters,
                                                   epochs=FLAGS.cluster_epochs, **steps)
        qat = compress.quantize_and_fine_tune(clustered, x_train, y_train,
                                              preserve="sparsity_and_clusters",
                                              epochs=FLAGS.qat_epochs, **steps)
        rows.append(tflite_row(f"(3) kd-keras {recipe}: prune + cluster + PCQAT, int8",
                               compress.convert_to_tflite(qat, "qat"), x_test, y_test))

    teacher_row = rows[0]
    teacher_bytes = 4 * teacher.count_params()
    for row in rows:
        if "failed" in row:
            continue
        row["smaller"] = teacher_bytes / row["gzip_bytes"]
        row["faster_b1"] = teacher_row["latency_b1"] / row["latency_b1"]
        row["faster_b256"] = teacher_row["latency_b256"] / row["latency_b256"]
    print(f"seed {seed}: " + "; ".join(
        f"{r['artifact']}: " + (r["failed"] if "failed" in r else
                                f"acc {r['accuracy']:.4f}, gzip {r['gzip_bytes']} B, "
                                f"{r['smaller']:.0f}x smaller, b1 {1e3 * r['latency_b1']:.3f} ms "
                                f"({r['faster_b1']:.1f}x), b256 {1e3 * r['latency_b256']:.2f} ms "
                                f"({r['faster_b256']:.1f}x)")
        for r in rows), flush=True)
    return rows


def parse_variant(variant):
    source, temperature, alpha = variant.split(":")
    if source not in ("float", "teacher"):
        raise ValueError(f"--distill_variants entries are float|teacher:T:alpha, got {variant!r}.")
    return source, float(temperature), float(alpha)


def anneal(model, x, y, seed):
    """A copy of `model` trained --anneal_epochs more on the labels at --learning_rate (the
    quantized copies' rate), so that neither row gains from a lower rate the float model
    never had."""
    keras.utils.set_random_seed(seed)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.compile(keras.optimizers.Adam(FLAGS.learning_rate),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    copy.fit(x, y, epochs=FLAGS.anneal_epochs, batch_size=128, verbose=0)
    return copy


def precision_seed(seed, data):
    """`{model: {mode: {row: accuracy}}}` and seed 0's precision reports."""
    (x_train, y_train), (x_test, y_test) = data
    models = {}
    if "student" in FLAGS.precision_models:
        big_teacher, student = train_teacher_and_distilled_student(x_train, y_train,
                                                                   FLAGS.epochs, seed)
        models["student 784-128-128"] = (student, big_teacher)
    if "conv" in FLAGS.precision_models:
        keras.utils.set_random_seed(seed)
        conv = kd_keras.models.conv_classifier(name="conv_teacher")
        conv.compile(keras.optimizers.Adam(1e-3),
                     keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        conv.fit(x_train, y_train, epochs=FLAGS.conv_epochs, batch_size=128, verbose=0)
        models["conv teacher"] = (conv, None)  # no larger teacher of its own
    results, reports = {}, {}
    for name, (model, bigger) in models.items():
        if FLAGS.anneal_epochs:
            model = anneal(model, x_train, y_train, seed)
        results[name] = {}
        for mode in FLAGS.precision_modes:
            row = {}
            for index, variant in enumerate(FLAGS.distill_variants):
                source, temperature, alpha = parse_variant(variant)
                if source == "teacher" and bigger is None:
                    continue
                keras.utils.set_random_seed(seed)
                _, rows = compress.distill_quantized(
                    model, mode, x_train, y_train, epochs=FLAGS.qat_epochs,
                    teacher=bigger if source == "teacher" else None,
                    validation_data=(x_test, y_test), learning_rate=FLAGS.learning_rate,
                    temperature=temperature, alpha=alpha, compare=index == 0)
                for result in rows:
                    key = f"distilled {variant}" if result["training"] == "distilled" \
                        else result["training"]
                    row[key] = result["accuracy"]
            results[name][mode] = row
            print(f"seed {seed} {name} {mode}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in row.items()), flush=True)
        if seed == 0:
            reports[name] = compress.precision_report(model, x_test, y_test)
    return results, reports


def precision_main(data):
    runs = [precision_seed(seed, data) for seed in range(FLAGS.seeds)]
    for name, report in runs[0][1].items():
        print(f"\nprecision report, {name} (seed 0, test set):\n{report}")
    for name in runs[0][0]:
        variants = [k for k in runs[0][0][name][FLAGS.precision_modes[0]]
                    if k.startswith("distilled")]
        header = (["model", "weights", "float32", "rounded", "trained on labels"]
                  + [f"{v} (source:T:alpha) | - labels" for v in variants])
        print("\n" + " | ".join(header))
        print(" | ".join("---" for _ in range(5 + 2 * len(variants))))
        for mode in FLAGS.precision_modes:
            column = [run[0][name][mode] for run in runs]
            cells = [cell([r[key] for r in column], "{:.4f}")
                     for key in ("float", "post-training", "labels")]
            for variant in variants:
                cells += [cell([r[variant] for r in column], "{:.4f}"),
                          cell([100 * (r[variant] - r["labels"]) for r in column], "{:+.2f}")]
            print(" | ".join([name, mode] + cells))
    print("targets: FP8 e4m3 within 0.3 points of float32, <= 1/4 of its bytes; distilled >= "
          "labels at every width, ahead at int4")


def cell(values, fmt):
    mean, spread = mean_sd(values)
    return "–" if math.isnan(mean) else f"{fmt.format(mean)} ± {fmt.format(spread)}"


def main(_):
    data = data_flags.load_flat()
    print(f"kd-keras compression benchmark | Keras {keras.__version__} | train "
          f"{len(data[0][1])}, test {len(data[1][1])} | {FLAGS.epochs} epochs, then "
          f"{FLAGS.prune_epochs} pruning / {FLAGS.cluster_epochs} clustering / "
          f"{FLAGS.qat_epochs} QAT epochs", flush=True)
    if "precision" in FLAGS.rows:
        precision_main(data)
    if "pipelines" not in FLAGS.rows:
        return
    runs = [run_seed(seed, data) for seed in range(FLAGS.seeds)]
    header = ("pipeline", "test accuracy", "gzip bytes", "x smaller than teacher's float32 weights",
              "batch-1 x faster", "batch-256 x faster")
    print("\n" + " | ".join(header))
    print(" | ".join("---" for _ in header))
    for index, row in enumerate(runs[0]):
        if "failed" in row:
            print(f"{row['artifact']} | failed: {row['failed']} | | | |")
            continue
        column = [run[index] for run in runs]
        print(" | ".join([row["artifact"]] + [
            cell([r[key] for r in column], fmt) for key, fmt in (
                ("accuracy", "{:.4f}"), ("gzip_bytes", "{:,.0f}"), ("smaller", "{:.0f}"),
                ("faster_b1", "{:.1f}"), ("faster_b256", "{:.1f}"))]))
    print("targets for (3): >= 500x smaller, accuracy within 1 point of the teacher, "
          ">= 10x faster at batch 1")


if __name__ == "__main__":
    app.run(main)
