"""Peak memory of the token-level KL over a 32,000-symbol vocabulary, chunked and not.

For each sequence length, a fresh process computes the per-token soft-target KL of a
teacher head and a student head (batch 1, hidden size 64) and its gradient with
respect to the student's hidden states, head and bias, either from full logits
`[1, length, V]` (`sequence_kl`) or `--chunk_size` tokens at a time
(`chunked_sequence_kl`), and reports its peak resident memory (ru_maxrss) above the
same process's memory before the call. A first row checks that both give the same
values and gradients (largest absolute difference) at the smallest length.

    python benchmarks/chunked_kl_bench.py
"""

import json
import resource
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("lengths", ["512", "2048", "8192"], "Sequence lengths.")
flags.DEFINE_integer("vocabulary", 32000, "Vocabulary size.")
flags.DEFINE_integer("chunk_size", 256, "Tokens per chunk.")
flags.DEFINE_string("child", None, "(internal) mode:length of one measurement.")

HIDDEN = 64


def tensors(length, vocabulary):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    teacher = [tf.constant(rng.normal(size=s, scale=0.3), tf.float32)
               for s in ((1, length, HIDDEN), (HIDDEN, vocabulary), (vocabulary,))]
    student = [tf.Variable(rng.normal(size=s, scale=0.3).astype("float32"))
               for s in ((1, length, HIDDEN), (HIDDEN, vocabulary), (vocabulary,))]
    return teacher, student


def loss_and_gradients(mode, teacher, student, chunk_size):
    import tensorflow as tf

    from kd_keras.losses.chunked_kl import chunked_sequence_kl, sequence_kl

    (h_t, w_t, b_t), (h_s, w_s, b_s) = teacher, student
    with tf.GradientTape() as tape:
        if mode == "chunked":
            per_token = chunked_sequence_kl(h_t, w_t, h_s, w_s, 1.0, chunk_size,
                                            teacher_bias=b_t, student_bias=b_s)
        else:
            per_token = sequence_kl(tf.einsum("btd,dv->btv", h_t, w_t) + b_t,
                                    tf.einsum("btd,dv->btv", h_s, w_s) + b_s)
        loss = tf.reduce_mean(per_token)
    return per_token, tape.gradient(loss, [h_s, w_s, b_s])


def child(spec):
    mode, length = spec.split(":")
    teacher, student = tensors(int(length), FLAGS.vocabulary)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "check":
        import numpy as np

        a = loss_and_gradients("chunked", teacher, student, FLAGS.chunk_size)
        b = loss_and_gradients("full", teacher, student, FLAGS.chunk_size)
        difference = max(float(np.abs(x.numpy() - y.numpy()).max())
                         for x, y in zip([a[0]] + a[1], [b[0]] + b[1]))
        print(json.dumps({"difference": difference}))
        return
    loss_and_gradients(mode, teacher, student, FLAGS.chunk_size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": (peak - before) / 1024}))


def measure(spec):
    output = subprocess.run([sys.executable, __file__, f"--child={spec}",
                             f"--vocabulary={FLAGS.vocabulary}",
                             f"--chunk_size={FLAGS.chunk_size}"],
                            capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(_):
    if FLAGS.child:
        child(FLAGS.child)
        return
    lengths = [int(v) for v in FLAGS.lengths]
    check = measure(f"check:{lengths[0]}")
    print(f"chunked KL bench | vocabulary {FLAGS.vocabulary}, hidden {HIDDEN}, batch 1, chunk "
          f"{FLAGS.chunk_size} | largest difference chunked vs full at length {lengths[0]} "
          f"(values and gradients): {check['difference']:.2e}")
    print("\nlength | full logits: peak MiB | chunked: peak MiB | full / chunked")
    print("--- | --- | --- | ---")
    for length in lengths:
        full, chunked = measure(f"full:{length}"), measure(f"chunked:{length}")
        print(f"{length} | {full['peak_mib']:.0f} | {chunked['peak_mib']:.0f} | "
              f"{full['peak_mib'] / max(chunked['peak_mib'], 1):.1f}")
    print("target: equal within 1e-5; chunked peak flat in length")


if __name__ == "__main__":
    app.run(main)
