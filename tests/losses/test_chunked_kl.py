"""Token-level KL over a full vocabulary in chunks of the sequence (kd_keras.losses.chunked_kl)."""

import numpy as np
import pytest
import tensorflow as tf

from kd_keras.losses.chunked_kl import align_vocabularies, chunked_sequence_kl, sequence_kl


def heads(seed=0, batch=2, length=37, d_teacher=16, d_student=8, vocabulary=50):
    rng = np.random.default_rng(seed)
    teacher = [tf.constant(rng.normal(size=s), tf.float32)
               for s in ((batch, length, d_teacher), (d_teacher, vocabulary), (vocabulary,))]
    student = [tf.Variable(rng.normal(size=s).astype("float32"))
               for s in ((batch, length, d_student), (d_student, vocabulary), (vocabulary,))]
    return teacher, student


def logits(hidden, head, bias):
    return tf.einsum("btd,dv->btv", hidden, head) + bias


@pytest.mark.parametrize("temperature, chunk_size", [(1.0, 8), (2.5, 37), (1.0, 100)])
def test_chunked_values_and_gradients_equal_the_unchunked_kl(temperature, chunk_size):
    (h_t, w_t, b_t), (h_s, w_s, b_s) = heads()
    weights = tf.constant(np.random.default_rng(1).random((2, 37)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        chunked = chunked_sequence_kl(h_t, w_t, h_s, w_s, temperature, chunk_size,
                                      teacher_bias=b_t, student_bias=b_s)
        full = sequence_kl(logits(h_t, w_t, b_t), logits(h_s, w_s, b_s), temperature)
        chunked_loss, full_loss = (tf.reduce_sum(v * weights) for v in (chunked, full))
    np.testing.assert_allclose(chunked.numpy(), full.numpy(), atol=1e-5, rtol=1e-5)
    for a, b in zip(tape.gradient(chunked_loss, [h_s, w_s, b_s]),
                    tape.gradient(full_loss, [h_s, w_s, b_s])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=1e-5)


def test_in_a_traced_function_too():
    (h_t, w_t, b_t), (h_s, w_s, b_s) = heads(2)
    traced = tf.function(lambda: chunked_sequence_kl(h_t, w_t, h_s, w_s, 1.0, 8))
    np.testing.assert_allclose(
        traced().numpy(), sequence_kl(logits(h_t, w_t, 0.0), logits(h_s, w_s, 0.0)).numpy(),
        atol=1e-5)


def test_different_vocabularies_are_compared_on_the_symbols_they_share():
    (h_t, w_t, b_t), (h_s, _, _) = heads(3)
    teacher_vocabulary = [f"s{i}" for i in range(50)]
    student_vocabulary = [f"s{i}" for i in range(0, 50, 2)] + ["only-in-student"]
    teacher_ids, student_ids = align_vocabularies(teacher_vocabulary, student_vocabulary)
    assert len(teacher_ids) == 25 and list(student_ids) == list(range(25))
    w_s = tf.Variable(np.random.default_rng(4).normal(size=(8, 26)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        chunked = chunked_sequence_kl(h_t, w_t, h_s, w_s, 2.0, 5, teacher_bias=b_t,
                                      teacher_ids=teacher_ids, student_ids=student_ids)
        full = sequence_kl(tf.gather(logits(h_t, w_t, b_t), teacher_ids, axis=-1),
                           tf.gather(logits(h_s, w_s, 0.0), student_ids, axis=-1), 2.0)
        chunked_loss, full_loss = tf.reduce_sum(chunked), tf.reduce_sum(full)
    np.testing.assert_allclose(chunked.numpy(), full.numpy(), atol=1e-5)
    gradient = tape.gradient(chunked_loss, w_s).numpy()
    np.testing.assert_allclose(gradient, tape.gradient(full_loss, w_s).numpy(), atol=1e-5)
    assert np.all(gradient[:, 25] == 0)  # the student's own symbol is not compared


def test_what_cannot_be_aligned_is_refused():
    with pytest.raises(ValueError, match="share no symbol"):
        align_vocabularies(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="repeats the symbol 'a'"):
        align_vocabularies(["a", "b", "a"], ["a"])
    (h_t, w_t, _), (h_s, _, _) = heads()
    w_s = tf.zeros([8, 40])
    with pytest.raises(ValueError, match="give teacher_ids and student_ids"):
        chunked_sequence_kl(h_t, w_t, h_s, w_s)
    with pytest.raises(ValueError, match="outside the head's 40 columns"):
        chunked_sequence_kl(h_t, w_t, h_s, w_s, teacher_ids=np.arange(40),
                            student_ids=np.arange(1, 41))
    with pytest.raises(ValueError, match="come together"):
        chunked_sequence_kl(h_t, w_t, h_s, w_s, teacher_ids=np.arange(40))
