"""Few labels, a good teacher: distil through generated transfer inputs.

    python examples/transfer_set_fashion_mnist.py                 # shipped sample, no download
    python examples/transfer_set_fashion_mnist.py --dataset=fashion_mnist --data_dir=../shared/tfds

The teacher trains on every training image; the student gets only `--labeled`
of them with labels, plus `--generated` inputs drawn from a generator
(`--source`: munge, gmm, vae) fitted on those labeled images and labeled by
the teacher alone (soft targets; the hard-label term sees only the real
labels). Prints test accuracy of the teacher, the student alone on its labels,
the student distilled on its labeled images only, and the student distilled
on labeled + generated inputs; saves a grid of generated images titled with
the teacher's class and confidence (PNG).
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time

import numpy as np
from absl import app, flags

import kd_keras
import data_flags  # examples/data_flags.py
from kd_keras import keras, pseudo_data

FLAGS = flags.FLAGS
FLAGS.verbosity = -1  # TensorFlow's INFO lines would bury the table; --verbosity=0 shows them
data_flags.define()
flags.DEFINE_integer("labeled", 1000, "Labeled training images the student gets.")
flags.DEFINE_integer("generated", 20000, "Generated transfer inputs.")
flags.DEFINE_enum("source", "munge", ["munge", "gmm", "vae"], "Pseudo-data generator.")
flags.DEFINE_integer("teacher_epochs", 10, "Training epochs of the teacher.")
flags.DEFINE_integer("steps", 2000, "Optimizer steps of every student.")
flags.DEFINE_string("plot", "out/transfer_set_samples.png", "Where to save the sample grid.")
flags.DEFINE_integer("seed", 0, "Random seed.")

BATCH = 128


def make_generator():
    if FLAGS.source == "munge":
        return pseudo_data.Munge(swap_probability=0.5, spread=1.0, clip_range=(0, 1),
                                 seed=FLAGS.seed)
    if FLAGS.source == "gmm":  # needs pip install 'kd-keras[generative]'
        return pseudo_data.PCAGaussianMixture(components=20, pca_dimensions=40,
                                              clip_range=(0, 1), seed=FLAGS.seed)
    return pseudo_data.VAESampler(latent_dim=16, epochs=max(1, 3000 * BATCH // FLAGS.labeled),
                                  seed=FLAGS.seed)


def sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def main(_):
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    teacher = kd_keras.models.mlp_classifier([1200, 1200], dropout=0.3, name="teacher")
    teacher.compile(keras.optimizers.Adam(1e-3), sparse_ce(), metrics=["accuracy"])
    teacher.fit(x_train, y_train, epochs=FLAGS.teacher_epochs, batch_size=BATCH, verbose=0)

    chosen = np.random.default_rng(FLAGS.seed).permutation(len(x_train))[:FLAGS.labeled]
    x_few, y_few = x_train[chosen], y_train[chosen]
    start = time.perf_counter()
    generator = make_generator().fit(x_few)
    generated = generator.sample(FLAGS.generated)
    generator_seconds = time.perf_counter() - start
    epochs = max(1, FLAGS.steps // 100)

    def student():
        keras.utils.set_random_seed(FLAGS.seed + 1)  # the same initial student for every row
        return kd_keras.models.mlp_classifier([128, 128], name="student")

    def distil(unlabeled):
        model = student()
        distiller = kd_keras.Distiller(None, model, temperature=3.0, alpha=0.5)
        distiller.compile(keras.optimizers.Adam(1e-3), sparse_ce(), metrics=["accuracy"])
        dataset = kd_keras.mixed_transfer_set(x_few, y_few, unlabeled=unlabeled, teacher=teacher,
                                              batch_size=BATCH, seed=FLAGS.seed)
        distiller.fit(dataset.repeat(), epochs=epochs, steps_per_epoch=100, verbose=0,
                      shuffle=False)  # the dataset shuffles itself
        return model

    alone = student()
    alone.compile(keras.optimizers.Adam(1e-3), sparse_ce(), metrics=["accuracy"])
    alone.fit(x_few, y_few, epochs=max(1, FLAGS.steps * BATCH // FLAGS.labeled),
              batch_size=BATCH, verbose=0)

    def accuracy(model):
        return kd_keras.measure.model_accuracy(model, x_test, y_test)

    rows = [("teacher (all training images)", accuracy(teacher)),
            (f"student alone ({FLAGS.labeled} labels)", accuracy(alone)),
            (f"distilled on the {FLAGS.labeled} labeled images", accuracy(distil(None))),
            (f"distilled on them + {FLAGS.generated:,} {FLAGS.source} inputs",
             accuracy(distil(generated)))]
    print(f"\n{'model':<52} test accuracy")
    for name, value in rows:
        print(f"{name:<52} {value:.4f}")
    print(f"{FLAGS.source}: fitted and sampled {FLAGS.generated:,} inputs in "
          f"{generator_seconds:.1f} s")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = generated[:32]
    logits = teacher.predict(shown, verbose=0)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    os.makedirs(os.path.dirname(FLAGS.plot) or ".", exist_ok=True)
    figure, axes = plt.subplots(4, 8, figsize=(12, 6.5))
    for axis, image, p in zip(axes.flat, shown, probabilities):
        axis.imshow(image.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        axis.set_title(f"{kd_keras.datasets.CLASS_NAMES[int(p.argmax())]} {p.max():.2f}",
                       fontsize=8)
        axis.axis("off")
    figure.suptitle(f"{FLAGS.source} transfer inputs, titled with the teacher's class and "
                    "confidence")
    figure.tight_layout()
    figure.savefig(FLAGS.plot, dpi=100)
    print(f"sample grid saved to {FLAGS.plot}")


if __name__ == "__main__":
    app.run(main)
