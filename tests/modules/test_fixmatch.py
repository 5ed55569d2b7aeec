"""FixMatch-style consistency: the strong view, the masked loss, the two-view stream."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import tracking_step
from modules.trainer import (
    data,
    loss_fixmatch,
    methods,
    strong_augment,
    training,
)
from modules.trainer.step_context import StepContext
from pipeline import presets
from pipeline.components.example_gen import build, sources


def _seed(i):
    return tf.constant([i, 11], tf.int64)


def test_every_strong_op_keeps_shape_and_range_and_changes_the_image():
    image = tf.random.stateless_uniform([32, 32, 3], _seed(0), 0, 255)
    image = tf.image.resize(image[None, 8:24, 8:24], [32, 32])[0]  # smooth, not noise
    changed = 0
    for op in strong_augment.OPS:
        out = tf.clip_by_value(op(image, tf.constant(0.8), tf.constant(0.9)), 0, 255).numpy()
        assert out.shape == (32, 32, 3), op.__name__
        changed += not np.allclose(out, image.numpy(), atol=1e-3)
    assert changed == len(strong_augment.OPS) - 1  # all but the identity


def test_cutout_paints_one_grey_square_of_the_given_side():
    image = tf.zeros([32, 32, 3])
    out = strong_augment.cutout(image, 16, _seed(3)).numpy()
    grey = np.argwhere(out[..., 0] == 127.5)
    rows, cols = np.unique(grey[:, 0]), np.unique(grey[:, 1])
    assert len(rows) <= 16 and len(cols) <= 16 and len(grey) == len(rows) * len(cols)
    assert len(grey) >= 8 * 8  # clipped at a border at most to a quarter


def test_strong_view_is_seeded():
    image = tf.random.stateless_uniform([32, 32, 3], _seed(0), 0, 255)
    a = strong_augment.strong_view(image, _seed(1)).numpy()
    np.testing.assert_array_equal(a, strong_augment.strong_view(image, _seed(1)).numpy())
    assert not np.allclose(a, strong_augment.strong_view(image, _seed(2)).numpy())
    assert a.min() >= 0 and a.max() <= 255


def test_loss_masks_unconfident_weak_views():
    exp = presets.get("fixmatch")
    # Weak logits: image 0 confident for class 2 (p ~ 1), image 1 unsure (uniform).
    weak = np.zeros([2, 10], np.float32)
    weak[0, 2] = 20.0
    strong = np.random.default_rng(0).normal(size=[2, 10]).astype(np.float32)
    tracked, step = tracking_step(exp)
    loss = loss_fixmatch.term({"classes_unsup": tf.constant(np.concatenate([weak, strong]))},
                              {}, step).numpy()
    log_p = strong[0] - np.log(np.exp(strong[0]).sum())
    np.testing.assert_allclose(loss, [-log_p[2], 0.0], rtol=1e-5)
    assert float(tracked["fixmatch_mask_rate"]) == 0.5


def test_no_gradient_flows_through_the_weak_view():
    logits = tf.Variable(np.random.default_rng(1).normal(size=[4, 10]).astype(np.float32) * 9)
    exp = presets.get("fixmatch").replace(fixmatch_threshold=0.01)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(loss_fixmatch.term({"classes_unsup": logits}, {},
                                                StepContext(exp=exp)))
    gradient = tape.gradient(loss, logits).numpy()
    assert np.all(gradient[:2] == 0) and np.any(gradient[2:] != 0)


@pytest.mark.parametrize("preset,network_images", [("fixmatch", 2),
                                                    ("moam_fixmatch_step_1", 8)])
def test_two_view_stream_and_a_train_step(image_folder, tmp_path, preset, network_images):
    build.build_splits(sources.ImageFolderSource(image_folder), str(tmp_path / "s"),
                       build.SplitOptions(labelled_fraction=0.5, num_shards=2))
    patterns = [str(tmp_path / "s" / "Split-labelled" / "*"),
                str(tmp_path / "s" / "Split-unlabelled" / "*")]
    exp = presets.get(preset, "synthetic").replace(num_classes=4, batch_size=4,
                                                   num_labelled_examples=20,
                                                   fixmatch_threshold=0.3)
    batch = next(iter(data.train_dataset(patterns, exp)))
    assert batch["unlabelled"]["strong"].shape == batch["unlabelled"]["image"].shape
    assert not np.allclose(batch["unlabelled"]["strong"], batch["unlabelled"]["image"])
    prepared = methods.prepare(batch, exp)
    assert prepared["unlabelled"]["image"].shape[0] == network_images * exp.unsup_batch_size
    assert "label" not in prepared["unlabelled"]  # unlabelled labels never reach a loss
    logs = training.build_model(exp).train_step(batch)
    assert {f"{term}_loss" for term in exp.losses} | {"fixmatch_mask_rate"} <= set(logs)
    assert np.isfinite(float(logs["total_loss"]))


def test_fixmatch_settings_are_checked():
    exp = presets.get("fixmatch")
    # Labelled + mu = 2 unlabelled images, each seen as a weak and a strong view.
    assert methods.images_per_labelled_image(exp) == 5
    for changes, message in ((dict(unsup_batch_mult=0.0), "unlabelled batch"),
                             (dict(fixmatch_threshold=1.5), "fixmatch_threshold"),
                             (dict(losses={"fixmatch": 1.0, "exemplar": 1.0}), "combine")):
        with pytest.raises(ValueError, match=message):
            exp.replace(**changes).validate()
