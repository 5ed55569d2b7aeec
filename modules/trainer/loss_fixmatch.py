"""FixMatch-style consistency (Sohn et al. 2020): confident weak views label strong views.

The unlabelled stream carries two views of each image (modules/trainer/data.py): a weak
one (the recipe's pad-crop and flip) and a strong one (strong_augment.py: RandAugment-style
ops and Cutout). `prepare` stacks them, weak first, so one shared forward pass (with
the labelled images, as every S4L method) gives both. The weak view's prediction, without
gradient, is a pseudo-label where its top probability reaches `fixmatch_threshold`; the
strong view is trained toward it with cross-entropy. Unconfident images contribute 0 and
still count in the mean, as in FixMatch. With rotation (MOAM step 1's FixMatch variant) both
stacked halves are then turned 4 ways, image-major, so row j of the strong half is the strong
view of the image and turn that row j of the weak half shows.
"""

from __future__ import annotations

import tensorflow as tf

from modules.trainer.experiment import Experiment
from modules.trainer.method_spec import LossSpec
from modules.trainer.step_context import StepContext

DIAGNOSTICS = ("fixmatch_mask_rate",)


def stack_views(stream: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """{"image": weak [B], "strong": [B]} -> {"image": [weak ; strong] [2B]} (no labels)."""
    return {"image": tf.concat([stream["image"], stream["strong"]], axis=0)}


def term(outputs: dict[str, tf.Tensor], batch: dict, step: StepContext) -> tf.Tensor:
    """Per-unlabelled-image masked cross-entropy of the strong view: [B_u]."""
    weak, strong = tf.split(outputs["classes_unsup"], 2, axis=0)
    probabilities = tf.nn.softmax(tf.stop_gradient(weak))
    confidence = tf.reduce_max(probabilities, axis=-1)
    pseudo_labels = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    mask = tf.cast(confidence >= step.exp.fixmatch_threshold, tf.float32)
    step.track("fixmatch_mask_rate", tf.reduce_mean(mask))
    return mask * tf.nn.sparse_softmax_cross_entropy_with_logits(pseudo_labels, strong)


def prepare(batch: dict, exp: Experiment) -> dict:
    """Stacks the unlabelled images' weak and strong views (weak first)."""
    del exp
    return {**batch, "unlabelled": stack_views(batch["unlabelled"])}


SPEC = LossSpec(name="fixmatch", term=term, prepare=prepare, prepare_order=0,
                strong_view=True, unlabelled_views=2, diagnostics=DIAGNOSTICS)
