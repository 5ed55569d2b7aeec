"""Supervised classification loss (docs/original_s4l.md §4.1): CE of `classes_sup` against y."""

from __future__ import annotations

import tensorflow as tf

from modules.trainer.method_spec import LossSpec
from modules.trainer.step_context import StepContext


def supervised_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Per-example sparse softmax cross-entropy: [N, K] logits, [N] labels -> [N]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))


def term(outputs: dict[str, tf.Tensor], batch: dict, step: StepContext) -> tf.Tensor:
    """The supervised term on the labelled half of the shared forward pass: [B], times the
    stream's `label_weight` where a method's input preparation sets one."""
    del step
    labelled = batch["labelled"]
    loss = supervised_loss(outputs["classes_sup"], labelled["label"])
    if "label_weight" in labelled:
        loss *= labelled["label_weight"]
    return loss


SPEC = LossSpec(name="supervised", term=term)
