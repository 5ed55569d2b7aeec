"""The views a classifier trained on, and logits averaged over them (modules/trainer/views.py)."""

import numpy as np
import pytest
import tensorflow as tf

from modules.trainer import experiment, views


def _exp(**changes):
    return experiment.for_dataset("synthetic").replace(**changes)


@pytest.mark.parametrize("changes, expected", [
    ({"losses": {"supervised": 1.0}, "flip_lr": False}, 1),
    ({"losses": {"supervised": 1.0}, "flip_lr": True}, 2),
    ({"losses": {"supervised": 1.0, "rotation": 1.0}, "flip_lr": False}, 4),
    ({"losses": {"supervised": 1.0, "rotation": 1.0}, "flip_lr": True}, 8),
    # The classifier trained on upright images only: the turns are not its views.
    ({"losses": {"supervised": 1.0, "rotation": 1.0}, "flip_lr": True,
      "rotation_classify_turns": False}, 2),
])
def test_count_follows_what_the_classifier_trained_on(changes, expected):
    exp = _exp(**changes)
    images = tf.random.uniform([3, 8, 8, 3], seed=1)
    assert views.count(exp) == expected
    assert views.make_views(images, exp).shape == (expected * 3, 8, 8, 3)


def test_views_are_view_major_upright_first_and_average_per_image():
    exp = _exp(losses={"supervised": 1.0, "rotation": 1.0}, flip_lr=True)
    images = tf.random.uniform([2, 6, 6, 1], seed=2)
    made = views.make_views(images, exp).numpy()
    expected = [np.rot90(im, k, axes=(1, 2)) for im in (images.numpy(), images.numpy()[:, :, ::-1])
                for k in range(4)]
    for v, view in enumerate(expected):
        np.testing.assert_allclose(made[v * 2:(v + 1) * 2], view)
    # Logits that are each view's index: every image's average is the mean index, 3.5.
    logits = tf.repeat(tf.range(8, dtype=tf.float32), 2)[:, None] * tf.ones([1, 5])
    np.testing.assert_allclose(views.average(logits, exp).numpy(), np.full([2, 5], 3.5))


def test_unknown_pseudo_label_views_is_rejected():
    with pytest.raises(ValueError, match="pseudo_label_views"):
        _exp(pseudo_label_views="rotated").validate()
