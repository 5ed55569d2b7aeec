"""The registry of loss terms and the shared forward pass of every S4L method.

`TERMS` maps the loss names used in `Experiment.losses` to `term(outputs, batch, step)`
functions that return per-example losses; only training.py reduces them. A method is a set of
weighted terms (its preset's `losses`): supervised, S4L-Rotation (supervised + rotation),
S4L-Exemplar (supervised + exemplar), VAT, VAT+EntMin, MOAM step 1 (rotation + VAT + EntMin)
and FixMatch-style consistency (supervised + fixmatch).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tf_keras as keras

from modules.trainer import (
    loss_entmin,
    loss_exemplar,
    loss_fixmatch,
    loss_rotation,
    loss_supervised,
    loss_vat,
)
from modules.trainer.experiment import Experiment
from modules.trainer.step_context import StepContext

TERMS: dict[str, Callable[[dict, dict, StepContext], tf.Tensor]] = {
    "supervised": loss_supervised.term,
    "rotation": loss_rotation.term,
    "exemplar": loss_exemplar.term,
    "vat": loss_vat.term,
    "entmin": loss_entmin.term,
    "fixmatch": loss_fixmatch.term,
}

# Diagnostic scalars a term logs through StepContext.track.
DIAGNOSTICS: dict[str, tuple[str, ...]] = {"vat": ("vat_r_adv_norm",),
                                            "fixmatch": loss_fixmatch.DIAGNOSTICS}


def heads(exp: Experiment) -> dict[str, int]:
    """Extra linear heads on pre_logits that the experiment's losses need: name -> units."""
    out = {}
    if "rotation" in exp.losses:
        out["rotations"] = loss_rotation.NUM_ROTATIONS
    if "exemplar" in exp.losses:
        out["embeddings"] = exp.triplet_embed_dim
    return out


def diagnostics(exp: Experiment) -> list[str]:
    return [name for loss in exp.losses for name in DIAGNOSTICS.get(loss, ())]


def prepare(batch: dict, exp: Experiment) -> dict:
    """The methods' input transforms, applied in the train step: rotation turns every image
    4 ways, exemplar flattens the P patches of every image (both image-major), FixMatch
    stacks the unlabelled images' weak and strong views."""
    if "rotation" in exp.losses:
        return {name: loss_rotation.rotate_stream(stream) for name, stream in batch.items()}
    if "exemplar" in exp.losses:
        return {name: loss_exemplar.flatten_patches(stream, exp.exemplar_identity)
                for name, stream in batch.items()}
    if "fixmatch" in exp.losses:
        return {**batch, "unlabelled": loss_fixmatch.stack_views(batch["unlabelled"])}
    return batch


def forward(model: keras.Model, batch: dict, training: bool) -> dict[str, tf.Tensor]:
    """One shared pass over `[unsup ; sup]` (docs/original_s4l.md §3.5).

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
