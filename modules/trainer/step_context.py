"""What a loss term may use besides the forward outputs and the batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from modules.trainer.experiment import Experiment


@dataclasses.dataclass
class StepContext:
    """One train step's context for the loss terms.

    Attributes:
      exp: the experiment.
      model: the S4L model, for terms that run extra forward passes (VAT).
      tape: the step's GradientTape; terms pause it around work that needs no parameter
        gradient (the VAT power step), so its activations are not kept.
      seed: [2] int32 seed unique to this step, for stateless random draws.
      track: `track(name, value)` logs a diagnostic scalar (e.g. the VAT perturbation norm).
    """

    exp: Experiment
    model: Any = None
    tape: tf.GradientTape | None = None
    seed: tf.Tensor | None = None
    track: Callable[[str, tf.Tensor], None] = lambda name, value: None
