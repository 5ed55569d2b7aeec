"""S4L-Rotation (docs/original_s4l.md §4.2): predict which of R=4 rotations an image shows.

Both streams are rotated in the train step, image-major (the 4 rotations of an image are
adjacent), after the per-image crop and flip, as the original's `...|-1_to_1|rotate`.
The classifier trains on all 4 rotated copies of each labelled image (labels repeated), and
`L_rot = 0.5 * L_rot_u + 0.5 * L_rot_s` (rot_loss_unsup = rot_loss_sup = 1). With
`rotation_classify_turns=False` (not in the original) the labelled stream also carries a
`label_weight` of R on upright rows and 0 on turned ones, so the supervised term is the mean
cross-entropy of the upright copies only.
The train step logs `rotation_accuracy`, the share of the batch's turned images whose turn the
head predicts (both streams): a pretext task that is solved early gives little signal.
"""

from __future__ import annotations

import tensorflow as tf

from modules.trainer import loss_utils
from modules.trainer.experiment import Experiment
from modules.trainer.method_spec import LossSpec
from modules.trainer.step_context import StepContext

NUM_ROTATIONS = 4
DIAGNOSTICS = ("rotation_accuracy",)


def rotate_batch(images: tf.Tensor) -> tf.Tensor:
    """[B, H, W, C] -> [R * B, H, W, C], image-major: row i * R + k is image i turned k * 90
    degrees counter-clockwise (tf.image.rot90)."""
    rotated = tf.stack([tf.image.rot90(images, k) for k in range(NUM_ROTATIONS)], axis=1)
    shape = tf.shape(images)
    return tf.reshape(rotated, tf.concat([[-1], shape[1:]], axis=0))


def rotation_labels(num_images: tf.Tensor | int) -> tf.Tensor:
    """[0, 1, 2, 3, 0, 1, 2, 3, ...] for `num_images` source images: [R * B] int32."""
    return tf.tile(tf.range(NUM_ROTATIONS, dtype=tf.int32), [num_images])


def rotate_stream(stream: dict[str, tf.Tensor],
                  classify_turns: bool = True) -> dict[str, tf.Tensor]:
    """Rotates a stream's images; repeats its class labels; adds `rotation` labels, and
    without `classify_turns` a `label_weight` that keeps only the upright copies."""
    images = stream["image"]
    num_images = tf.shape(images)[0]
    out = {"image": rotate_batch(images), "rotation": rotation_labels(num_images)}
    if "label" in stream:
        out["label"] = tf.repeat(stream["label"], NUM_ROTATIONS)
        if not classify_turns:
            upright = tf.one_hot(0, NUM_ROTATIONS, on_value=float(NUM_ROTATIONS))
            out["label_weight"] = tf.tile(upright, [num_images])
    return out


def rotation_loss(rotation_logits: tf.Tensor, rotation_labels: tf.Tensor) -> tf.Tensor:
    """Per-example CE of the rotation head: [N, R] logits, [N] labels -> [N]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=rotation_labels, logits=tf.cast(rotation_logits, tf.float32))


def rotation_accuracy(rotation_logits: tf.Tensor, rotation_labels: tf.Tensor) -> tf.Tensor:
    """Share of images whose predicted turn is right: [N, R] logits, [N] labels -> scalar."""
    predicted = tf.argmax(rotation_logits, axis=-1, output_type=tf.int32)
    right = tf.equal(predicted, tf.cast(rotation_labels, tf.int32))
    return tf.reduce_mean(tf.cast(right, tf.float32))


def term(outputs: dict[str, tf.Tensor], batch: dict, step: StepContext) -> tf.Tensor:
    """Rotation loss of both halves, weighted so its batch mean is 0.5 L_u + 0.5 L_s: [N]."""
    logits, labels = [outputs["rotations_sup"]], [batch["labelled"]["rotation"]]
    if "rotations_unsup" in outputs:
        logits.append(outputs["rotations_unsup"])
        labels.append(batch["unlabelled"]["rotation"])
    step.track("rotation_accuracy",
               rotation_accuracy(tf.concat(logits, axis=0), tf.concat(labels, axis=0)))
    sup = rotation_loss(logits[0], labels[0])
    if len(logits) == 1:
        return sup
    return loss_utils.mean_of_halves(rotation_loss(logits[1], labels[1]), sup)


def prepare(batch: dict, exp: Experiment) -> dict:
    """Turns every image of both streams 4 ways (image-major)."""
    return {name: rotate_stream(stream, exp.rotation_classify_turns)
            for name, stream in batch.items()}


SPEC = LossSpec(name="rotation", term=term, prepare=prepare,
                heads=lambda exp: {"rotations": NUM_ROTATIONS},
                views=lambda exp: NUM_ROTATIONS, diagnostics=DIAGNOSTICS)
