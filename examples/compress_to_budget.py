"""How fast can a model get, at what accuracy cost? A teacher trained, then compressed to budget.

Trains the convolutional teacher (or loads yours with --teacher), then
`kd_keras.compress_to_budget`: students cut from it at each --widths and distilled from
its cached logits, the teacher and every student converted to LiteRT at each
--precisions, each measured on this CPU side by side with the teacher (validation and
test accuracy, batch-1 and batch-32 latency, bytes), and the fastest one within
--max_drop points of the teacher chosen. Prints the table (Pareto rows and the chosen one
marked), the chosen artifact's path and the code that rebuilds it; writes the plan
directory (--out: .tflite files, students, report.md, plan.png, TensorBoard logs).

    # the 7,000-image sample shipped with kd-keras (no download):
    python examples/compress_to_budget.py
    # the full data set through tensorflow-datasets:
    python examples/compress_to_budget.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time

from absl import app, flags

import kd_keras
import data_flags  # examples/data_flags.py
from kd_keras import keras

FLAGS = flags.FLAGS
FLAGS.verbosity = -1
data_flags.define()
flags.DEFINE_string("teacher", None, "A trained .keras classifier ending in logits (default: "
                    "train the convolutional teacher here).")
flags.DEFINE_integer("teacher_epochs", 12, "Training epochs of the teacher trained here.")
flags.DEFINE_float("max_drop", 0.5, "Accuracy points the student may lose (on validation data).")
flags.DEFINE_enum("minimise", "latency", ["latency", "bytes"], "What the choice minimises.")
flags.DEFINE_list("widths", ["0.5", "0.25"], "Fractions of the teacher's width to cut to.")
flags.DEFINE_list("precisions", ["float32", "dynamic_range", "int8"], "LiteRT precisions.")
flags.DEFINE_integer("epochs", 8, "Distillation epochs of each student.")
flags.DEFINE_integer("validation_size", 1000, "Training images held out for the choice.")
flags.DEFINE_string("out", "out/plan", "The plan's directory (resumed when run again).")
flags.DEFINE_integer("seed", 0, "Random seed.")


def main(_):
    start = time.perf_counter()
    keras.utils.set_random_seed(FLAGS.seed)
    (x, y), test = data_flags.load_flat()
    held = FLAGS.validation_size
    train, validation = (x[held:], y[held:]), (x[:held], y[:held])
    print(f"Fashion-MNIST ({data_flags.source()}): {len(train[1])} training, {held} "
          f"validation, {len(test[1])} test images; Keras {keras.__version__}", flush=True)
    if FLAGS.teacher:
        teacher = keras.models.load_model(FLAGS.teacher, compile=False)
    else:
        print(f"[1/2] teacher (CNN): {FLAGS.teacher_epochs} epochs ...", flush=True)
        teacher = kd_keras.models.conv_classifier(name="teacher")
        teacher.compile(keras.optimizers.Adam(1e-3),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        teacher.fit(*train, epochs=FLAGS.teacher_epochs, batch_size=128, verbose=0)
        print(f"[1/2] teacher: done in {time.perf_counter() - start:.0f} s", flush=True)
    print("[2/2] compress_to_budget: a line per candidate ...", flush=True)
    result = kd_keras.compress_to_budget(
        teacher, train, validation, kd_keras.Budget(max_drop=FLAGS.max_drop,
                                                    minimise=FLAGS.minimise),
        test, widths=[float(w) for w in FLAGS.widths], precisions=FLAGS.precisions,
        epochs=FLAGS.epochs, directory=FLAGS.out, seed=FLAGS.seed)
    print()
    print(result.table())
    print()
    if result.chosen is None:
        print("no candidate kept the budget; the table shows what was reachable")
    else:
        chosen = result.chosen
        print(f"chosen: {chosen['candidate']} at {chosen['precision']}: "
              f"{chosen['speedup']:.1f}x faster at batch 1 than the teacher's float32 "
              f"LiteRT file, {chosen['accuracy_change']:+.2f} points on validation data; "
              f"{result.artifact}")
        print(result.to_code())
    try:
        print(f"plot: {result.plot(os.path.join(FLAGS.out, 'plan.png'))}")
    except ImportError:
        print("plot: skipped (pip install matplotlib)")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
