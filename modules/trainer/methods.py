"""The registry of loss terms and the shared forward pass of every S4L method.

Each `loss_<name>.py` exports one `SPEC` (method_spec.LossSpec): its term and what it needs
from the rest of the Trainer. `SPECS` collects them; heads, the train step's batch transform,
views, patches, costs and diagnostics all derive from it, so a new method is one loss file
plus one preset. A method is a set of weighted terms (its preset's `losses`): supervised,
S4L-Rotation (supervised + rotation), S4L-Exemplar (supervised + exemplar), VAT, VAT+EntMin,
MOAM step 1 (rotation + VAT + EntMin, or rotation + fixmatch) and FixMatch-style consistency
(supervised + fixmatch).
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
from modules.trainer.method_spec import LossSpec
from modules.trainer.step_context import StepContext

SPECS: dict[str, LossSpec] = {spec.name: spec for spec in (
    loss_supervised.SPEC, loss_rotation.SPEC, loss_exemplar.SPEC, loss_vat.SPEC,
    loss_entmin.SPEC, loss_fixmatch.SPEC)}
# The term functions by name (training.py reads them here; tests may replace one).
TERMS: dict[str, Callable[[dict, dict, StepContext], tf.Tensor]] = {
    name: spec.term for name, spec in SPECS.items()}
# The base network's filters_factor: network-image costs are relative to its width.
_BASE_FILTERS_FACTOR = 4


def specs(exp: Experiment) -> list[LossSpec]:
    return [SPECS[name] for name in exp.losses]


def heads(exp: Experiment) -> dict[str, int]:
    """Extra linear heads on pre_logits that the experiment's losses need: name -> units."""
    return {name: units for spec in specs(exp) for name, units in spec.heads(exp).items()}


def diagnostics(exp: Experiment) -> list[str]:
    return [name for spec in specs(exp) for name in spec.diagnostics]


def prepare(batch: dict, exp: Experiment) -> dict:
    """The method's input transforms, applied in the train step (rotation turns every image 4
    ways, exemplar flattens the P patches of every image, FixMatch stacks the weak and strong
    views), in `prepare_order`: FixMatch's stacking before rotation, so that every view of an
    unlabelled image is turned 4 ways (Experiment.validate says which terms combine)."""
    for spec in sorted(specs(exp), key=lambda spec: spec.prepare_order):
        if spec.prepare is not None:
            batch = spec.prepare(batch, exp)
    return batch


def views(exp: Experiment) -> int:
    """Network images per stream image after `prepare` (rotation 4, exemplar P, else 1)."""
    return max(spec.views(exp) for spec in specs(exp))


def train_patches(exp: Experiment) -> int:
    """Images the input pipeline cuts from each training image (exemplar P, else 1)."""
    return max(spec.train_patches(exp) for spec in specs(exp))


def uses_strong_view(exp: Experiment) -> bool:
    return any(spec.strong_view for spec in specs(exp))


def needs_exact_float32(exp: Experiment) -> bool:
    return any(spec.exact_float32_matmuls for spec in specs(exp))


def images_per_labelled_image(exp: Experiment) -> float:
    """Forward-pass images a method runs per labelled training image (docs/original_s4l.md
    Appendix B), weighted by width^2 relative to the base network's filters_factor 4."""
    unlabelled_views = max(spec.unlabelled_views for spec in specs(exp))
    clean = views(exp) * (1 + unlabelled_views * exp.unsup_batch_mult)
    perturbed = views(exp) * sum(spec.extra_passes(exp) for spec in specs(exp))
    return (clean + perturbed) * (exp.filters_factor / _BASE_FILTERS_FACTOR) ** 2


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
