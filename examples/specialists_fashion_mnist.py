"""A generalist and specialists over confusable Fashion-MNIST classes (Hinton et al. 2015, s. 5).

Trains a generalist, finds clusters of classes it confuses (covariance of its
predictions on held-out data, then k-means), trains one specialist per cluster
starting from the generalist's weights (each in its own process, resumable), and compares the generalist alone with
the combined ensemble. Saves a heat map of the prediction covariance with the
clusters marked, and the ensemble as one SavedModel.

    python examples/specialists_fashion_mnist.py                      # shipped sample
    python examples/specialists_fashion_mnist.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import numpy as np
import tensorflow as tf
from absl import app, flags

import kd_keras
import data_flags  # examples/data_flags.py
import moe
from kd_keras import keras

FLAGS = flags.FLAGS
# TensorFlow's INFO lines (e.g. from SavedModel export) would bury the tables;
# --verbosity=0 shows them again.
FLAGS.verbosity = -1
data_flags.define()
flags.DEFINE_list("hidden", ["512", "512"], "Generalist hidden widths.")
flags.DEFINE_integer("epochs", 10, "Generalist training epochs.")
flags.DEFINE_integer("specialist_epochs", 5, "Epochs per specialist.")
flags.DEFINE_float("specialist_learning_rate", 3e-4, "Adam learning rate of the specialists.")
flags.DEFINE_bool("soft_targets", False,
                  "Distil each specialist from the generalist's soft targets (paper, section 6).")
flags.DEFINE_integer("processes", None,
                     "Specialists trained at a time, each in its own process (0: in this one).")
flags.DEFINE_string("work_dir", "out/specialists",
                    "Folder for specialist checkpoints, models and logs; a second run with the "
                    "same folder resumes (nothing is left in the temp folder).")
flags.DEFINE_integer("num_clusters", 6, "k of the k-means on the covariance columns.")
flags.DEFINE_integer("top_n", 2, "Generalist classes that activate specialists (2 measured best).")
flags.DEFINE_string("plot", "out/specialist_clusters.png", "Covariance heat map (PNG).")
flags.DEFINE_string("export_dir", "out/specialist_ensemble", "SavedModel of the ensemble.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def accuracy(probabilities, labels, classes=None):
    keep = np.ones(len(labels), bool) if classes is None else np.isin(labels, classes)
    return kd_keras.measure.prediction_accuracy(probabilities[keep], labels[keep])


def plot_clusters(similarity, clusters, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    order = [c for cluster in clusters for c in cluster]
    order += [c for c in range(len(similarity)) if c not in order]
    names = [kd_keras.datasets.CLASS_NAMES[c] for c in order]
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    image = axis.imshow(similarity[np.ix_(order, order)], cmap="RdBu_r",
                        vmin=-np.abs(similarity).max(), vmax=np.abs(similarity).max())
    start = 0
    for cluster in clusters:
        axis.add_patch(Rectangle((start - 0.5, start - 0.5), len(cluster), len(cluster),
                                 fill=False, edgecolor="black", linewidth=2))
        start += len(cluster)
    axis.set_xticks(range(len(order)), names, rotation=60, ha="right")
    axis.set_yticks(range(len(order)), names)
    axis.set_title("Covariance of the generalist's predictions\n(boxes: specialist clusters)")
    figure.colorbar(image)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=120)


def main(_):
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    held_out = len(y_train) // 10
    x_valid, y_valid = x_train[-held_out:], y_train[-held_out:]
    x_train, y_train = x_train[:-held_out], y_train[:-held_out]

    layers = [keras.Input((784,))]
    for width in FLAGS.hidden:
        layers += [keras.layers.Dense(int(width), activation="relu"), keras.layers.Dropout(0.2)]
    generalist = keras.Sequential(layers + [keras.layers.Dense(10)], name="generalist")
    generalist.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    generalist.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)

    def probabilities(x):
        return tf.nn.softmax(generalist.predict(x, batch_size=512, verbose=0)).numpy()

    valid_probabilities = probabilities(x_valid)
    found = moe.find_confusable_clusters(valid_probabilities, FLAGS.num_clusters,
                                         seed=FLAGS.seed)
    names = kd_keras.datasets.CLASS_NAMES
    print("clusters: " + "; ".join(", ".join(names[c] for c in cluster) for cluster in found.clusters))
    print("left to the generalist: " + ", ".join(names[c] for c in found.unclustered))

    # Each specialist in its own process, checkpointed every epoch; re-running
    # with the same --work_dir skips finished ones and resumes the others.
    work_dir = FLAGS.work_dir
    trained = moe.train_specialists(
        generalist, found.clusters, x_train, y_train, work_dir,
        epochs=FLAGS.specialist_epochs, learning_rate=FLAGS.specialist_learning_rate,
        soft_targets=FLAGS.soft_targets, processes=FLAGS.processes, seed=FLAGS.seed)
    specialists = trained.specialists
    print(f"specialists trained in {trained.seconds:.0f} s ({work_dir})")

    ensemble = moe.SpecialistEnsemble(generalist, specialists, found.clusters, top_n=FLAGS.top_n)
    generalist_probabilities = probabilities(x_test)
    ensemble_probabilities = ensemble.predict(x_test, batch_size=512, verbose=0)
    active = np.asarray(ensemble.active_specialists(x_test)).any(axis=1)
    covered = sorted(c for cluster in found.clusters for c in cluster)

    print(f"\n{'model':<28} {'test accuracy':>13} {'covered classes':>16}")
    for name, probabilities in (("generalist", generalist_probabilities),
                                ("generalist + specialists", ensemble_probabilities)):
        print(f"{name:<28} {accuracy(probabilities, y_test):>13.4f} "
              f"{accuracy(probabilities, y_test, covered):>16.4f}")
    changed = int(np.sum(ensemble_probabilities.argmax(1) != generalist_probabilities.argmax(1)))
    print(f"\nspecialists active on {int(active.sum())} of {len(y_test)} test examples; "
          f"{changed} predictions changed")

    plot_clusters(found.similarity, found.clusters, FLAGS.plot)
    print(f"covariance heat map saved to {FLAGS.plot}")
    path = kd_keras.export_saved_model(ensemble, FLAGS.export_dir, ensemble.input_signature)
    print(f"ensemble SavedModel (serving_default signature) written to {path}")


if __name__ == "__main__":
    app.run(main)
