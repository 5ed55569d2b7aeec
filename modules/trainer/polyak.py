"""Polyak averaging (S4L_SPEC section 4.6): an EMA of the trainable weights.

shadow <- decay * shadow + (1 - decay) * weight after every step, with the fixed decay
0.5 ** (1 / (half_life_epochs * steps_per_epoch)) (the original: a half-life of one labelled
epoch, `Experiment.polyak_half_life_epochs`), shadows starting at the
initial weights; BN moving statistics are not averaged. Written here rather than with Keras'
`use_ema` (which evaluates with the raw weights during `fit` and seeds the average at the
first step) or `tf.train.ExponentialMovingAverage` (which creates its variables lazily inside
the train step, so a restored backup would not contain them).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def decay_for(steps_per_epoch: int, half_life_epochs: float = 1.0) -> float:
    return 0.5 ** (1.0 / (half_life_epochs * steps_per_epoch))


class PolyakAverage(tf.Module):
    """Shadow copies of `variables`, checkpointed with the model that holds this module."""

    def __init__(self, variables: list[tf.Variable], decay: float):
        super().__init__(name="polyak")
        self.decay = decay
        self._variables = list(variables)
        # ONLY_FIRST_REPLICA: replicas hold identical weights after each synchronised step.
        self.shadows = [
            tf.Variable(v.read_value(), trainable=False, name=v.name.split(":")[0] + "_ema",
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for v in self._variables]

    def reset(self) -> None:
        """Restarts the averages at the current weights (after a warm start)."""
        for shadow, variable in zip(self.shadows, self._variables, strict=True):
            shadow.assign(variable)

    def update(self) -> None:
        for shadow, variable in zip(self.shadows, self._variables, strict=True):
            shadow.assign(self.decay * shadow + (1.0 - self.decay) * variable)

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
