"""Epochs -> steps and the learning-rate schedule (docs/original_s4l.md §5.2).

An epoch is one pass over the labelled subset: `steps_per_epoch = N_lab // B`. The first
schedule entry is the linear warm-up (from exactly 0), the last the total length, the ones
between are decay boundaries with TF `piecewise_constant` semantics (left-inclusive).
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from modules.trainer.experiment import Experiment


def steps_per_epoch(exp: Experiment) -> int:
    if exp.num_labelled_examples < 1:
        raise ValueError(
            f"experiment {exp.name!r}: num_labelled_examples is unset; it is filled in from "
            "the labelled split before training")
    return max(1, exp.num_labelled_examples // exp.batch_size)


def total_steps(exp: Experiment) -> int:
    return math.ceil(exp.schedule_epochs[-1] * steps_per_epoch(exp))


def warmup_steps(exp: Experiment) -> int:
    return round(exp.schedule_epochs[0] * steps_per_epoch(exp))


def decay_boundaries(exp: Experiment) -> list[int]:
    return [round(e * steps_per_epoch(exp)) for e in exp.schedule_epochs[1:-1]]


@keras.utils.register_keras_serializable(package="s4l")
class WarmupPiecewiseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `base_lr`, then `base_lr * decay_factor**k` after the k-th boundary."""

    def __init__(self, base_lr: float, warmup_steps: int, boundaries: list[int],
                 decay_factor: float = 0.1):
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        # Number of boundaries strictly below `step`: base for t <= b1, base*f for b1 < t <= b2.
        passed = tf.zeros([], tf.float32)
        for boundary in self.boundaries:
            passed += tf.cast(step > boundary, tf.float32)
        decayed = self.base_lr * tf.pow(self.decay_factor, passed)
        if self.warmup_steps <= 0:
            return decayed
        warm = step * self.base_lr / self.warmup_steps
        return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict:
        return {"base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "boundaries": self.boundaries, "decay_factor": self.decay_factor}


def learning_rate(exp: Experiment) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule of `exp`, as a function of the optimizer's step counter.

    "cosine" is Keras' CosineDecay with its linear warm-up from 0 (decay to exactly 0 at
    the last step); "piecewise" is the original's warm-up and step decay.
    """
    if exp.lr_schedule == "cosine":
        warmup = warmup_steps(exp)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=max(1, total_steps(exp) - warmup),
            alpha=0.0, warmup_target=exp.base_lr, warmup_steps=warmup)
    return WarmupPiecewiseDecay(exp.base_lr, warmup_steps(exp), decay_boundaries(exp),
                                exp.lr_decay_factor)
