"""Entropy minimisation (docs/original_s4l.md §4.4): mean entropy of the clean class predictions.

Covers the same images as VAT (`loss_vat.target_set`): labelled and unlabelled with
`apply_vat_to_labelled` (VAT+EntMin), the rotated unlabelled images only in MOAM step 1.
Computed on the clean logits of the shared pass, with gradient.
"""

from __future__ import annotations

import tensorflow as tf

from modules.trainer import loss_utils, loss_vat
from modules.trainer.method_spec import LossSpec
from modules.trainer.step_context import StepContext


def term(outputs: dict[str, tf.Tensor], batch: dict, step: StepContext) -> tf.Tensor:
    """Per-example entropy H(softmax(Z)) over the target set: [N_X]."""
    _, clean_logits = loss_vat.target_set(outputs, batch, step.exp)
    return loss_utils.entropy(clean_logits)


SPEC = LossSpec(name="entmin", term=term)
