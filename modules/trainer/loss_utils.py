"""Helpers shared by the loss terms."""

from __future__ import annotations

import tensorflow as tf


def mean_of_halves(unsup: tf.Tensor, sup: tf.Tensor) -> tf.Tensor:
    """Per-example losses [N_u + N_s] whose batch mean is 0.5 mean(unsup) + 0.5 mean(sup).

    Terms return per-example losses and the train step reduces them with
    `tf.nn.compute_average_loss` (sum / N): each half is scaled so the result is the mean of
    the two means, whatever the two batch sizes are (the original's 0.5/0.5 mixes).
    """
    n_sup = tf.cast(tf.shape(sup)[0], tf.float32)
    n_unsup = tf.cast(tf.shape(unsup)[0], tf.float32)
    total = n_sup + n_unsup
    return tf.concat([unsup * (0.5 * total / n_unsup), sup * (0.5 * total / n_sup)], axis=0)


def kl_divergence(p_logits: tf.Tensor, q_logits: tf.Tensor) -> tf.Tensor:
    """Per-example KL(softmax(p) || softmax(q)) over the last axis, from logits: [N]."""
    p_logits = tf.cast(p_logits, tf.float32)
    log_p = tf.nn.log_softmax(p_logits)
    log_q = tf.nn.log_softmax(tf.cast(q_logits, tf.float32))
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)


def entropy(logits: tf.Tensor) -> tf.Tensor:
    """Per-example entropy -sum p log p of softmax(logits): [N]."""
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    return -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)
