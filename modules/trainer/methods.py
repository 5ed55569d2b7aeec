"""The registry of loss terms and the shared forward pass of every S4L method.

`TERMS` maps the loss names used in `Experiment.losses` to `term(outputs, batch, exp)`
functions that return per-example losses; only training.py reduces them.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tf_keras as keras

from modules.trainer import loss_rotation, loss_supervised
from modules.trainer.experiment import Experiment

TERMS: dict[str, Callable[[dict, dict, Experiment], tf.Tensor]] = {
    "supervised": loss_supervised.term,
    "rotation": loss_rotation.term,
}

# Extra heads on pre_logits that a loss needs: name -> number of outputs.
HEADS = {"rotation": ("rotations", loss_rotation.NUM_ROTATIONS)}


def prepare(batch: dict, exp: Experiment) -> dict:
    """The methods' input transforms, applied in the train step (rotation: x4 both streams)."""
    if "rotation" in exp.losses:
        return {name: loss_rotation.rotate_stream(stream) for name, stream in batch.items()}
    return batch


def forward(model: keras.Model, batch: dict, training: bool) -> dict[str, tf.Tensor]:
    """One shared pass over `[unsup ; sup]` (S4L_SPEC section 3.5).

    BN statistics are shared by both halves; every output is split back into `<name>_sup`
    and `<name>_unsup`. Without an unlabelled stream only the labelled images are forwarded.
    """
    labelled = batch["labelled"]["image"]
    if "unlabelled" not in batch:
        return {f"{k}_sup": v for k, v in model(labelled, training=training).items()}
    unlabelled = batch["unlabelled"]["image"]
    n_unsup = tf.shape(unlabelled)[0]
    outputs = model(tf.concat([unlabelled, labelled], axis=0), training=training)
    split = {}
    for name, value in outputs.items():
        split[f"{name}_unsup"] = value[:n_unsup]
        split[f"{name}_sup"] = value[n_unsup:]
    return split
