"""Polyak averaging (docs/original_s4l.md §4.6): an EMA of the trainable weights.

shadow <- decay * shadow + (1 - decay) * weight after every step, with the fixed decay
0.5 ** (1 / (half_life_epochs * steps_per_epoch)) (the original: a half-life of one labelled
epoch, `Experiment.polyak_half_life_epochs`), shadows starting at the
initial weights; BN moving statistics are not averaged. With `warm_up` (the small-image
recipe's half-life in steps), step t uses min(decay, (1 + t) / (10 + t)) as
`tf.train.ExponentialMovingAverage(num_updates=t)` does, so a short run's average does not
keep the initial weights. Written here rather than with Keras'
`use_ema` (which evaluates with the raw weights during `fit` and seeds the average at the
first step) or `tf.train.ExponentialMovingAverage` (which creates its variables lazily inside
the train step, so a restored backup would not contain them).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def decay_for(steps_per_epoch: int, half_life_epochs: float = 1.0) -> float:
    return 0.5 ** (1.0 / (half_life_epochs * steps_per_epoch))


def decay_for_steps(half_life_steps: float) -> float:
    return 0.5 ** (1.0 / half_life_steps)


class PolyakAverage(tf.Module):
    """Shadow copies of `variables`, checkpointed with the model that holds this module."""

    def __init__(self, variables: list[tf.Variable], decay: float, warm_up: bool = False):
        super().__init__(name="polyak")
        self.decay = decay
        self.warm_up = warm_up
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="polyak_updates",
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._variables = list(variables)
        # ONLY_FIRST_REPLICA: replicas hold identical weights after each synchronised step.
        self.shadows = [
            tf.Variable(v.read_value(), trainable=False, name=v.name.split(":")[0] + "_ema",
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for v in self._variables]

    def reset(self) -> None:
        """Restarts the averages at the current weights (after a warm start)."""
        self.updates.assign(0)
        for shadow, variable in zip(self.shadows, self._variables, strict=True):
            shadow.assign(variable)

    def update(self) -> None:
        decay = tf.constant(self.decay, tf.float32)
        if self.warm_up:
            t = tf.cast(self.updates, tf.float32)
            decay = tf.minimum(decay, (1.0 + t) / (10.0 + t))
        self.updates.assign_add(1)
        for shadow, variable in zip(self.shadows, self._variables, strict=True):
            shadow.assign(decay * shadow + (1.0 - decay) * variable)

    def swap(self) -> None:
        """Exchanges the live weights and the averages (call again to undo)."""
        for shadow, variable in zip(self.shadows, self._variables, strict=True):
            live = tf.identity(variable)
            variable.assign(shadow)
            shadow.assign(live)

    def copy_to_model(self) -> None:
        """Replaces the live weights with the averages, for the final evaluation and export."""
        for shadow, variable in zip(self.shadows, self._variables, strict=True):
            variable.assign(shadow)


class EvaluateWithAverages(keras.callbacks.Callback):
    """Validation inside `fit` sees the averaged weights; training continues on the raw ones."""

    def __init__(self, average: PolyakAverage):
        super().__init__()
        self.average = average

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.average.swap()

    def on_test_end(self, logs: dict | None = None) -> None:
        self.average.swap()
