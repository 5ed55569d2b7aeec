"""The views of an image that a model's classifier trained on, and its class logits averaged
over them: what a later stage's pseudo-labels come from with `pseudo_label_views="averaged"`
(the labeller's `averaged_views` serving signature, modules/trainer/export.py).

A classifier trained with horizontal flips (`flip_lr`) saw both mirror images of each image; a
rotation model whose classifier trained on the turned copies (`rotation_classify_turns`) saw
all four turns. Averaging over those views (test-time augmentation) labels more images right
than the upright view alone; averaging over views it never trained on would not.
"""

from __future__ import annotations

import tensorflow as tf

from modules.trainer import loss_rotation
from modules.trainer.experiment import Experiment


def classifies_turns(exp: Experiment) -> bool:
    """Whether the experiment's classifier trained on all four turns of its images."""
    return "rotation" in exp.losses and exp.rotation_classify_turns


def count(exp: Experiment) -> int:
    """How many views of each image the classifier trained on."""
    return (2 if exp.flip_lr else 1) * (loss_rotation.NUM_ROTATIONS if classifies_turns(exp)
                                        else 1)


def make_views(images: tf.Tensor, exp: Experiment) -> tf.Tensor:
    """[N, H, W, C] -> [V * N, H, W, C], view-major: rows v * N .. v * N + N - 1 are view v
    of every image (the upright images first)."""
    views = [images, tf.image.flip_left_right(images)] if exp.flip_lr else [images]
    if classifies_turns(exp):
        views = [tf.image.rot90(view, k) for view in views
                 for k in range(loss_rotation.NUM_ROTATIONS)]
    return tf.concat(views, axis=0)


def average(logits: tf.Tensor, exp: Experiment) -> tf.Tensor:
    """[V * N, K] view-major logits of `make_views` -> [N, K], their mean over the views."""
    per_view = tf.reshape(logits, [count(exp), -1, tf.shape(logits)[-1]])
    return tf.reduce_mean(per_view, axis=0)
