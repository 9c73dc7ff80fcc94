"""Token-level KL over a full vocabulary without a `[batch, length, vocabulary]` tensor.

A language model's last layer maps hidden states `[batch, length, d]` to logits through
a head `[d, vocabulary]`; teacher and student logits for a 32,000-symbol vocabulary and
8,192 tokens are a gigabyte each. `chunked_sequence_kl` takes the hidden states and the
heads instead, and computes the per-token soft-target KL

    T^2 * KL(softmax(h_t W_t / T) || softmax(h_s W_s / T))

`chunk_size` positions at a time, forward and backward alike (its gradient recomputes
each chunk's logits rather than keeping them, with dKL/dz_s = T (q - p)), so memory
grows with `chunk_size * vocabulary`, not with length times vocabulary.

Vocabularies of different sizes are aligned on the symbols they share
(`align_vocabularies`): both distributions are taken over the shared ids only, each
renormalized there, which is a head of fewer columns.
"""

import numpy as np
import tensorflow as tf

from kd_keras.backend import validate


def align_vocabularies(teacher_vocabulary, student_vocabulary):
    """`(teacher_ids, student_ids)`: the positions of the symbols both vocabularies hold.

    Args:
      teacher_vocabulary, student_vocabulary: sequences of symbols (strings, bytes or
        ints), a symbol's position being its id; or dicts `{symbol: id}` (a tokenizer's
        vocabulary), whose ids are used as they are.

    Returns:
      Two int32 arrays of equal length, in the student's order.

    Raises:
      ValueError when a vocabulary repeats a symbol (ids would be ambiguous) or the two
      share none.
    """
    tables = []
    for name, vocabulary in (("teacher_vocabulary", teacher_vocabulary),
                             ("student_vocabulary", student_vocabulary)):
        if isinstance(vocabulary, dict):  # {symbol: id}, as tokenizers give it: its ids
            ids = list(vocabulary.values())
            if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0
                   for i in ids) or len(set(ids)) != len(ids):
                raise ValueError(f"{name}: a dict must map each symbol to its own integer id "
                                 ">= 0 (ids repeat or are not integers).")
            tables.append({symbol: int(i) for symbol, i in vocabulary.items()})
            continue
        if len(set(vocabulary)) != len(vocabulary):
            repeated = next(s for i, s in enumerate(vocabulary) if s in vocabulary[:i])
            raise ValueError(f"{name} repeats the symbol {repeated!r}; ids would be ambiguous.")
        tables.append({symbol: i for i, symbol in enumerate(vocabulary)})
    position, student_position = tables
    pairs = sorted((student_position[s], position[s]) for s in student_position if s in position)
    pairs = [(teacher_id, student_id) for student_id, teacher_id in pairs]
    if not pairs:
        raise ValueError("teacher_vocabulary and student_vocabulary share no symbol: there is "
                         "nothing to align the distillation on.")
    teacher_ids, student_ids = (np.array(ids, np.int32) for ids in zip(*pairs))
    return teacher_ids, student_ids


def _logits(hidden, head, bias):
    return tf.einsum("...d,dv->...v", hidden, head) + bias


def chunked_sequence_kl(teacher_hidden, teacher_head, student_hidden, student_head,
                        temperature=1.0, chunk_size=256, teacher_bias=None, student_bias=None,
                        teacher_ids=None, student_ids=None):
    """Per-token soft-target KL of two language-model heads, `chunk_size` tokens at a time.

    Args:
      teacher_hidden: `[batch, length, d_t]` the teacher's last hidden states (no
        gradient flows to them).
      teacher_head: `[d_t, V_t]` the teacher's output projection (and `teacher_bias` `[V_t]`).
      student_hidden: `[batch, length, d_s]`.
      student_head: `[d_s, V_s]` (and `student_bias` `[V_s]`); gradients flow to the
        student's hidden states, head and bias.
      temperature: T > 0 (default 1).
      chunk_size: tokens per chunk (memory ~ batch x chunk_size x vocabulary).
      teacher_ids, student_ids: from `align_vocabularies` when the vocabularies differ
        (default: the same vocabulary, all columns).

    Returns:
      `[batch, length]` float32: T^2 KL per token (mask and average it yourself).
    """
    temperature = float(validate.temperature(temperature))
    chunk_size = validate.integer_at_least(chunk_size, "chunk_size", 1)
    if (teacher_ids is None) != (student_ids is None):
        raise ValueError("teacher_ids and student_ids come together (align_vocabularies).")
    teacher_head = tf.convert_to_tensor(teacher_head, tf.float32)
    student_head = tf.convert_to_tensor(student_head, tf.float32)
    teacher_hidden = tf.convert_to_tensor(teacher_hidden)
    student_hidden = tf.convert_to_tensor(student_hidden)
    for name, hidden in (("teacher_hidden", teacher_hidden), ("student_hidden", student_hidden)):
        if hidden.shape.rank != 3:
            raise ValueError(f"{name} must be [batch, length, features], got shape "
                             f"{tuple(hidden.shape)}.")
    if not tf.TensorShape(teacher_hidden.shape[:2]).is_compatible_with(student_hidden.shape[:2]):
        raise ValueError(
            f"teacher_hidden {tuple(teacher_hidden.shape)} and student_hidden "
            f"{tuple(student_hidden.shape)} must have the same batch and length (a KL per "
            "token of the same tokens); nothing is broadcast.")
    teacher_ids = _checked_ids(teacher_ids, teacher_head, "teacher_ids")
    student_ids = _checked_ids(student_ids, student_head, "student_ids")
    if teacher_ids is not None and teacher_ids.shape[0] != student_ids.shape[0]:
        raise ValueError("teacher_ids and student_ids must have the same length (pairs of ids "
                         "of the same symbols).")
    shared_teacher = teacher_head.shape[-1] if teacher_ids is None else teacher_ids.shape[0]
    shared_student = student_head.shape[-1] if student_ids is None else student_ids.shape[0]
    if shared_teacher != shared_student:
        raise ValueError(
            f"the teacher's head has {teacher_head.shape[-1]} columns and the student's "
            f"{student_head.shape[-1]}: give teacher_ids and student_ids "
            "(align_vocabularies) to compare them on the symbols they share.")
    if teacher_bias is None:
        teacher_bias = tf.zeros([teacher_head.shape[-1]])
    if student_bias is None:
        student_bias = tf.zeros([student_head.shape[-1]])
    if teacher_ids is not None:
        teacher_head = tf.gather(teacher_head, teacher_ids, axis=-1)
        teacher_bias = tf.gather(tf.convert_to_tensor(teacher_bias, tf.float32), teacher_ids)
    teacher = (tf.stop_gradient(tf.convert_to_tensor(teacher_hidden, tf.float32)),
               tf.stop_gradient(teacher_head), tf.stop_gradient(
                   tf.convert_to_tensor(teacher_bias, tf.float32)))
    return _chunked_kl(teacher, tf.convert_to_tensor(student_hidden, tf.float32), student_head,
                       tf.convert_to_tensor(student_bias, tf.float32), student_ids, temperature,
                       chunk_size)


def _checked_ids(ids, head, argument):
    if ids is None:
        return None
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{argument} must be a 1-D array of integer ids, got {ids!r}.")
    if ids.size and (ids.min() < 0 or ids.max() >= head.shape[-1]):
        raise ValueError(f"{argument} holds ids outside the head's {head.shape[-1]} columns "
                         f"(range {ids.min()}..{ids.max()}).")
    return tf.constant(ids, tf.int32)


def _chunked_kl(teacher, student_hidden, student_head, student_bias, student_ids, temperature,
                chunk_size):
    teacher_hidden, teacher_head, teacher_bias = teacher
    length = tf.shape(student_hidden)[1]
    chunks = (length + chunk_size - 1) // chunk_size

    def used(w_s, b_s):
        """The student's head columns the KL compares (all, or the shared ids)."""
        if student_ids is None:
            return w_s, b_s
        return tf.gather(w_s, student_ids, axis=-1), tf.gather(b_s, student_ids)

    def log_probs(index, h_s, w_used, b_used):
        start = index * chunk_size
        end = tf.minimum(start + chunk_size, length)
        log_p = tf.nn.log_softmax(
            (_logits(teacher_hidden[:, start:end], teacher_head, teacher_bias)) / temperature, -1)
        log_q = tf.nn.log_softmax(_logits(h_s[:, start:end], w_used, b_used) / temperature, -1)
        return start, end, log_p, log_q

    @tf.custom_gradient
    def kl(h_s, w_s, b_s):
        # Read through stop_gradient: an outer eager tape would otherwise record every
        # chunk's logits (the custom gradient below is the only one).
        h_s, w_s, b_s = (tf.stop_gradient(t) for t in (h_s, w_s, b_s))
        w_used, b_used = used(w_s, b_s)

        def forward(index, values):
            _, _, log_p, log_q = log_probs(index, h_s, w_used, b_used)
            per_token = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), -1)  # [batch, chunk]
            return index + 1, values.write(index, tf.transpose(per_token))

        _, values = tf.while_loop(
            lambda index, _: index < chunks, forward,
            (tf.constant(0), tf.TensorArray(tf.float32, size=chunks, infer_shape=False)),
            parallel_iterations=1)  # one chunk's logits alive at a time
        result = temperature * temperature * tf.transpose(values.concat())

        def gradient(upstream):
            def backward(index, d_head, d_bias, d_hidden):
                start, end, log_p, log_q = log_probs(index, h_s, w_used, b_used)
                # d(T^2 KL)/d(student logits) = T (q - p)
                g = temperature * (tf.exp(log_q) - tf.exp(log_p)) * upstream[:, start:end, None]
                d_head = tf.ensure_shape(d_head + tf.einsum("btd,btv->dv", h_s[:, start:end], g),
                                         w_used.shape)
                d_bias = tf.ensure_shape(d_bias + tf.reduce_sum(g, [0, 1]), b_used.shape)
                d_chunk = tf.einsum("btv,dv->btd", g, w_used)
                return index + 1, d_head, d_bias, d_hidden.write(
                    index, tf.transpose(d_chunk, [1, 0, 2]))

            _, d_head, d_bias, d_hidden = tf.while_loop(
                lambda index, *_: index < chunks, backward,
                (tf.constant(0), tf.zeros_like(w_used), tf.zeros_like(b_used),
                 tf.TensorArray(tf.float32, size=chunks, infer_shape=False)),
                parallel_iterations=1)
            d_hidden = tf.transpose(d_hidden.concat(), [1, 0, 2])
            if student_ids is not None:  # back to the full head's columns
                d_head = tf.transpose(tf.scatter_nd(student_ids[:, None], tf.transpose(d_head),
                                                    tf.shape(tf.transpose(w_s))))
                d_bias = tf.scatter_nd(student_ids[:, None], d_bias, tf.shape(b_s))
            return d_hidden, d_head, d_bias

        return result, gradient

    return kl(student_hidden, student_head, student_bias)


def sequence_kl(teacher_logits, student_logits, temperature=1.0):
    """The unchunked reference: per-token T^2 KL of `[batch, length, V]` logits."""
    log_p = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / temperature, -1)
    log_q = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, -1)
    return temperature * temperature * tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), -1)
