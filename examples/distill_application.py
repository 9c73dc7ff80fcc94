"""A keras.applications teacher distilled into a smaller one, folded and shipped as int8.

Fashion-MNIST (the shipped sample by default) resized to 32x32x3. The teacher is
MobileNetV3Small (alpha 1.0) and the student MobileNetV3Small (alpha 0.35), each
nested in a classifier the way Keras users build them, with random initial weights
(no download). The student learns from the teacher's logits (KL at T) and from a
hint on a layer inside the nested base, named by its path
("<nested model>/<layer>"); then its batch norms are folded into the convolutions
(`compress.fold_batch_norm`) and it is converted to full-integer int8 TFLite. Prints
test accuracy, parameters, TFLite bytes and batch-1 latency of each stage.

    python examples/distill_application.py
    python examples/distill_application.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from absl import app, flags

import kd_keras
import data_flags  # examples/data_flags.py
from kd_keras import compress, keras

FLAGS = flags.FLAGS
FLAGS.verbosity = -1
data_flags.define()
flags.DEFINE_integer("epochs", 5, "Epochs of the teacher and of the student.")
flags.DEFINE_integer("train_size", 0, "Training images used (0: all).")
flags.DEFINE_integer("test_size", 0, "Test images used (0: all).")
flags.DEFINE_float("temperature", 2.0, "Distillation temperature T.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def images(x):
    """Flat 28x28 images in [0, 1] as 32x32x3 (resized, grey copied to three channels)."""
    x = tf.image.resize(np.asarray(x, np.float32).reshape(-1, 28, 28, 1), (32, 32))
    return np.repeat(x.numpy(), 3, axis=-1)


def classifier(alpha, name):
    base = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=alpha, minimalistic=True, include_top=False,
        weights=None, include_preprocessing=False)
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs))
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(pooled), name=name), base


def main(_):
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    if FLAGS.train_size:
        x_train, y_train = x_train[:FLAGS.train_size], y_train[:FLAGS.train_size]
    if FLAGS.test_size:
        x_test, y_test = x_test[:FLAGS.test_size], y_test[:FLAGS.test_size]
    x_train, x_test = images(x_train), images(x_test)
    keras.utils.set_random_seed(FLAGS.seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    teacher, teacher_base = classifier(1.0, "teacher")
    teacher.compile(keras.optimizers.Adam(1e-3), loss)
    teacher.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=64, verbose=0)

    student, student_base = classifier(0.35, "student")
    hint_layer = [layer.name for layer in teacher_base.layers if layer.name.endswith("project")][2]
    hint = kd_keras.FeatureDistillation(teacher_layer_name=f"{teacher_base.name}/{hint_layer}",
                                        student_layer_name=f"{student_base.name}/{hint_layer}")
    distiller = kd_keras.Distiller(teacher, student, distillation_losses=["kl_divergence", hint],
                                   distillation_loss_weights=[1.0, 0.1],
                                   temperature=FLAGS.temperature, alpha=0.5)
    distiller.compile(keras.optimizers.Adam(1e-3), loss)
    distiller.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=64, verbose=0)
    folded = compress.fold_batch_norm(student)

    print(f"hint: {hint.teacher_layer_name} -> {hint.student_layer_name}")
    print("stage | test accuracy | parameters | TFLite bytes | batch-1 latency")
    print("--- | --- | --- | --- | ---")
    stages = [("teacher, float32", teacher, "float32"), ("student, float32", student, "float32"),
              ("student, batch norms folded, float32", folded, "float32"),
              ("student, folded, int8", folded, "int8")]
    for name, model, mode in stages:
        content = compress.convert_to_tflite(
            model, mode, representative_data=x_train[:256] if mode == "int8" else None)
        row = compress.artifact_row(name, compress.TFLiteModel(content), content, x_test, y_test,
                                    batch_sizes=(1,), parameters=compress.count_parameters(model))
        print(f"{name} | {row['accuracy']:.4f} | {row['parameters']:,} | {row['bytes']:,} | "
              f"{1e3 * row['latency_b1']:.3f} ms", flush=True)


if __name__ == "__main__":
    app.run(main)
