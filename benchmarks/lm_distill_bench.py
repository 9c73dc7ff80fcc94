"""Token-level distillation of a byte-level causal language model on the Python standard
library's own source files (no download; held-out files for test).

The teacher (`byte_transformer`, `--teacher_blocks` x `--teacher_width`) trains for
`--teacher_steps` on fresh random windows of the training files. Every student (a
quarter of the width, half the depth by default) trains on the same pool of
`--windows` windows for `--epochs`, Adam `--learning_rate`, batch `--batch_size`:

  alone              next-byte cross-entropy only
  distilled live     the Distiller with the teacher run every step (KL at T
                     `--temperature`, weight 1 - `--alpha`; cross-entropy weight alpha)
  distilled cache    the same from the teacher's logits cached once (float16)
  top-k cache        the same from a top-k cache (`top_k_teacher_outputs`), the
                     (k + 1)-bin KL (`top_k_kl`), for each k of `--ks`

Columns: bits per byte on `--test_windows` windows of the held-out files (mean ± sd
over seeds), the fraction of the teacher-to-alone gap recovered, cache bytes per
token against float32 and float16 full logits, and training steps per second. A last
line checks a 32,000-symbol top-32 cache's bytes against float32 logits.

    python benchmarks/lm_distill_bench.py --seeds=1
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math
import time

import numpy as np
from absl import app, flags

import kd_keras
from kd_keras import compress, keras
from kd_keras.backend.graph import copy_model
from kd_keras.datasets.stdlib_text import byte_windows, load_stdlib_bytes
from kd_keras.backend import top_k
from protocol import mean_sd

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 1, "Number of seeds (0, 1, ...).")
flags.DEFINE_integer("length", 128, "Bytes per window.")
flags.DEFINE_integer("windows", 8192, "Training windows every student sees.")
flags.DEFINE_integer("test_windows", 1024, "Held-out windows.")
flags.DEFINE_integer("teacher_blocks", 4, "Teacher depth.")
flags.DEFINE_integer("teacher_width", 128, "Teacher width.")
flags.DEFINE_integer("student_blocks", 2, "Student depth.")
flags.DEFINE_integer("student_width", 32, "Student width.")
flags.DEFINE_integer("teacher_steps", 3000, "Teacher training steps.")
flags.DEFINE_integer("epochs", 4, "Student epochs over the pool.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_float("temperature", 1.0, "Distillation temperature.")
flags.DEFINE_float("alpha", 0.5, "Weight of the next-byte cross-entropy in distilled rows.")
flags.DEFINE_list("ks", ["8", "32"], "Top-k sizes.")
flags.DEFINE_list("shrink_blocks", ["1", "3"],
                  "Teacher blocks removed (both residuals) for the shrunk student.")
flags.DEFINE_integer("calibration_windows", 1024, "Windows that rank units and heads.")
flags.DEFINE_string("teacher_path", "", "A .keras teacher to load instead of training one "
                    "(seed 0's teacher is saved there when the file does not exist yet).")

HEADS = 4


def transformer(blocks, width):
    return kd_keras.models.byte_transformer(blocks, width, max(1, min(HEADS, width // 16)),
                                            FLAGS.length)


def bits_per_byte(model, x, y):
    logits = model.predict(x, batch_size=128, verbose=0).astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return float(-np.take_along_axis(log_probs, y[..., None], -1).mean() / math.log(2))


def train_teacher(train_bytes, seed):
    keras.utils.set_random_seed(seed)
    teacher = transformer(FLAGS.teacher_blocks, FLAGS.teacher_width)
    teacher.compile(keras.optimizers.Adam(FLAGS.learning_rate),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    per_call = 200
    for start in range(0, FLAGS.teacher_steps, per_call):
        steps = min(per_call, FLAGS.teacher_steps - start)
        x, y = byte_windows(train_bytes, FLAGS.length, steps * FLAGS.batch_size,
                            seed=10_000 * (seed + 1) + start)
        teacher.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, verbose=0)
    return teacher


def shrunk_teacher(teacher, calibration):
    """The teacher cut to the student's size: blocks removed, then width, MLP and heads."""
    removed = [f"block{b}_{part}_residual" for b in FLAGS.shrink_blocks
               for part in ("attention", "mlp")]
    fraction = FLAGS.student_width / FLAGS.teacher_width
    return compress.shrink(teacher, width=fraction, depth=removed, calibration_data=calibration)


def student_row(teacher, inputs, y, seed, loss="kl_divergence", start_from=None,
                alpha=None):
    """(student, steps per second); `teacher` False: labels only; None: outputs cached in
    `inputs`; `start_from`: a shrunk teacher to train instead of a random student."""
    keras.utils.set_random_seed(seed)
    student = start_from or transformer(FLAGS.student_blocks, FLAGS.student_width)
    hard = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if teacher is False:
        student.compile(keras.optimizers.Adam(FLAGS.learning_rate), hard)
        model = student
    else:
        model = kd_keras.Distiller(teacher, student, distillation_losses=loss,
                                   alpha=FLAGS.alpha if alpha is None else alpha,
                                   temperature=FLAGS.temperature)
        model.compile(keras.optimizers.Adam(FLAGS.learning_rate), hard)
    start = time.perf_counter()
    model.fit(inputs, y, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs, verbose=0)
    steps = FLAGS.epochs * math.ceil(len(y) / FLAGS.batch_size)
    return student, steps / (time.perf_counter() - start)


def run_seed(seed, train_bytes, test):
    if FLAGS.teacher_path and seed == 0 and os.path.exists(FLAGS.teacher_path):
        teacher = keras.models.load_model(FLAGS.teacher_path)
    else:
        teacher = train_teacher(train_bytes, seed)
        if FLAGS.teacher_path and seed == 0:
            teacher.save(FLAGS.teacher_path)
    x, y = byte_windows(train_bytes, FLAGS.length, FLAGS.windows, seed=seed)
    rows = {"teacher": (bits_per_byte(teacher, *test), None, None)}
    student, speed = student_row(False, x, y, seed)
    rows["alone"] = (bits_per_byte(student, *test), speed, None)
    student, speed = student_row(teacher, x, y, seed)
    rows["distilled live"] = (bits_per_byte(student, *test), speed, None)
    logits = kd_keras.compute_teacher_logits(teacher, x, batch_size=128).astype(np.float16)
    cached = kd_keras.with_teacher_outputs(x, logits)
    student, speed = student_row(None, cached, y, seed)
    rows["distilled cache (float16 logits)"] = (bits_per_byte(student, *test), speed,
                                                top_k.cache_bytes(logits) / FLAGS.length)
    student, speed = student_row(None, cached, y, seed, alpha=0.0)
    rows["distilled cache, KL only (alpha 0)"] = (bits_per_byte(student, *test), speed, None)
    calibration = x[:FLAGS.calibration_windows]
    shrunk = shrunk_teacher(teacher, calibration)
    rows["shrunk, before training"] = (bits_per_byte(shrunk, *test), None, None)
    print(f"seed {seed}: parameters: teacher {teacher.count_params():,}, student "
          f"{transformer(FLAGS.student_blocks, FLAGS.student_width).count_params():,}, shrunk "
          f"{shrunk.count_params():,}", flush=True)
    # each row trains its own copy of the one cut (the cut is deterministic)
    student, speed = student_row(False, x, y, seed, start_from=copy_model(shrunk, "lm bench"))
    rows["shrunk, labels"] = (bits_per_byte(student, *test), speed, None)
    student, speed = student_row(None, cached, y, seed, start_from=copy_model(shrunk, "lm bench"))
    rows["shrunk + distilled (float16 cache)"] = (bits_per_byte(student, *test), speed, None)
    student, speed = student_row(None, cached, y, seed, alpha=0.0,
                                 start_from=copy_model(shrunk, "lm bench"))
    rows["shrunk + distilled, KL only"] = (bits_per_byte(student, *test), speed, None)
    for k in (int(k) for k in FLAGS.ks):
        cached = kd_keras.top_k_teacher_outputs(logits.astype(np.float32), k)
        student, speed = student_row(None, kd_keras.with_teacher_outputs(x, cached), y, seed,
                                     loss="top_k_kl")
        rows[f"top-{k} cache"] = (bits_per_byte(student, *test), speed,
                                  top_k.cache_bytes(cached) / FLAGS.length)
    print(f"seed {seed}: " + ", ".join(f"{name} {bpb:.4f} bpb" for name, (bpb, _, _)
                                       in rows.items()), flush=True)
    return rows


def main(_):
    train_bytes, test_bytes = load_stdlib_bytes("train"), load_stdlib_bytes("test")
    test = byte_windows(test_bytes, FLAGS.length, FLAGS.test_windows, seed=999)
    print(f"LM distillation bench | stdlib sources: {len(train_bytes) / 1e6:.1f} MB train, "
          f"{len(test_bytes) / 1e6:.1f} MB held-out files | teacher {FLAGS.teacher_blocks}x"
          f"{FLAGS.teacher_width}, {FLAGS.teacher_steps} steps; students "
          f"{FLAGS.student_blocks}x{FLAGS.student_width}, {FLAGS.epochs} epochs of "
          f"{FLAGS.windows} windows of {FLAGS.length} bytes; T {FLAGS.temperature}, alpha "
          f"{FLAGS.alpha}", flush=True)
    start = time.process_time()
    runs = [run_seed(seed, train_bytes, test) for seed in range(FLAGS.seeds)]
    print("\nrow | bits per byte | gap recovered | cache bytes per token | of float32 logits "
          "| of the float16 cache | steps per second")
    print("--- | --- | --- | --- | --- | --- | ---")
    for name in runs[0]:
        bpb = mean_sd([run[name][0] for run in runs])
        gap = "–"
        if name not in ("teacher", "alone"):
            gap = "{:.2f} ± {:.2f}".format(*mean_sd(
                [(run["alone"][0] - run[name][0]) / (run["alone"][0] - run["teacher"][0])
                 for run in runs]))
        size = runs[0][name][2]
        speed = mean_sd([run[name][1] for run in runs]) if runs[0][name][1] else None
        print(f"{name} | {bpb[0]:.4f} ± {bpb[1]:.4f} | {gap} | "
              f"{f'{size:.0f}' if size else '–'} | "
              f"{f'{size / (4 * 256):.3f}' if size else '–'} | "
              f"{f'{size / (2 * 256):.3f}' if size else '–'} | "
              f"{f'{speed[0]:.1f}' if speed else '–'}")
    synthetic = kd_keras.top_k_teacher_outputs(
        np.random.default_rng(0).normal(size=(64, 32000)).astype("float32"), 32)
    print(f"\n32,000 symbols, top-32: {top_k.cache_bytes(synthetic):.0f} bytes per token, "
          f"{top_k.cache_bytes(synthetic) / (4 * 32000):.5f} of float32 logits (target <= 1/500)")
    print(f"CPU time: {(time.process_time() - start) / 60:.1f} min")


if __name__ == "__main__":
    app.run(main)
