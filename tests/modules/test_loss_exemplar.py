"""S4L-Exemplar against independent NumPy references (docs/original_s4l.md §4.3)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import tracking_step
from modules.trainer import augment, experiment, loss_exemplar, training
from modules.transform import image_ops
from pipeline import presets


def _np_triplet(embeddings, identities, groups=None):
    """Brute-force batch-hard soft-margin triplet loss, one anchor at a time."""
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    groups = np.zeros(len(e)) if groups is None else groups
    out = []
    for i in range(len(e)):
        d = np.sqrt(np.maximum(((e - e[i]) ** 2).sum(axis=1), 1e-12))
        pos = [d[j] for j in range(len(e)) if j != i and identities[j] == identities[i]]
        neg = [d[j] for j in range(len(e))
               if identities[j] != identities[i] and groups[j] == groups[i]]
        out.append(np.log1p(np.exp(max(pos) - min(neg))))
    return np.array(out)


def test_identity_labels_fixed_and_original():
    np.testing.assert_array_equal(loss_exemplar.identity_labels(3, 2, "source_image"),
                                  [0, 0, 1, 1, 2, 2])
    # The original's swapped counts: groups of n_images consecutive rows.
    np.testing.assert_array_equal(loss_exemplar.identity_labels(3, 2, "original_swapped"),
                                  [0, 0, 0, 1, 1, 1])


def test_flatten_patches_is_image_major():
    images = np.arange(3 * 2 * 1 * 1 * 1, dtype=np.float32).reshape(3, 2, 1, 1, 1)
    out = loss_exemplar.flatten_patches({"image": images, "label": np.array([5, 6, 7])},
                                        "source_image")
    np.testing.assert_array_equal(out["image"][:, 0, 0, 0], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(out["label"], [5, 5, 6, 6, 7, 7])
    np.testing.assert_array_equal(out["identity"], [0, 0, 1, 1, 2, 2])


def test_flatten_patches_groups_consecutive_images_for_mining():
    images = np.zeros((5, 2, 1, 1, 1), np.float32)
    whole = loss_exemplar.flatten_patches({"image": images}, "source_image")
    assert "mining_group" not in whole  # one group: negatives from the whole stream
    grouped = loss_exemplar.flatten_patches({"image": images}, "source_image", 2)
    np.testing.assert_array_equal(grouped["mining_group"], [0] * 4 + [1] * 4 + [2] * 2)


def test_triplet_loss_mines_negatives_within_groups_only():
    rng = np.random.default_rng(2)
    embeddings = rng.normal(size=(12, 7)).astype(np.float32)
    ids = loss_exemplar.identity_labels(6, 2).numpy()
    groups = np.repeat([0, 1], 6)
    grouped, _ = loss_exemplar.batch_hard_triplet_loss(embeddings, ids, groups)
    np.testing.assert_allclose(grouped, _np_triplet(embeddings, ids, groups), rtol=1e-5)
    # Fewer candidates can only leave the nearest negative as far or farther.
    whole, _ = loss_exemplar.batch_hard_triplet_loss(embeddings, ids)
    assert np.all(grouped.numpy() <= whole.numpy() + 1e-6)
    assert np.any(grouped.numpy() < whole.numpy() - 1e-4)


@pytest.mark.parametrize("images", [-1, 1])
def test_mining_group_needs_two_images(images):
    with pytest.raises(ValueError, match="exemplar_mining_images"):
        presets.get("s4l_exemplar", "synthetic").replace(
            exemplar_mining_images=images).validate()


def test_pairwise_distances_match_numpy():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    expected = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 1e-12))
    np.testing.assert_allclose(loss_exemplar.pairwise_distances(x), expected, atol=1e-5)


@pytest.mark.parametrize("identity", ["source_image", "original_swapped"])
def test_triplet_loss_matches_brute_force(identity):
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(12, 7)).astype(np.float32)
    ids = loss_exemplar.identity_labels(4, 3, identity).numpy()
    np.testing.assert_allclose(loss_exemplar.batch_hard_triplet_loss(embeddings, ids)[0],
                               _np_triplet(embeddings, ids), rtol=1e-5)


def test_tight_identities_give_lower_loss_than_mixed_ones():
    centres = np.eye(4, 8, dtype=np.float32)
    tight = np.repeat(centres, 2, axis=0) + 0.01
    ids = np.repeat(np.arange(4), 2)
    mixed = tight[[0, 2, 1, 3, 4, 6, 5, 7]]
    assert (float(tf.reduce_mean(loss_exemplar.batch_hard_triplet_loss(tight, ids)[0]))
            < float(tf.reduce_mean(loss_exemplar.batch_hard_triplet_loss(mixed, ids)[0])))


def test_train_preprocess_makes_independent_patches():
    exp = presets.get("s4l_exemplar", "synthetic")
    image = tf.io.encode_png(tf.cast(tf.random.uniform([40, 40, 3], 0, 255), tf.uint8))
    patches = augment.train_preprocess(image, tf.constant([1, 2], tf.int64), exp).numpy()
    assert patches.shape == (exp.exemplar_patches, 32, 32, 3)
    assert patches.min() >= -1 and patches.max() <= 1
    assert not np.allclose(patches[0], patches[1])


def test_classifier_patch_is_cut_as_the_recipe_cuts_when_crops_are_not_classified():
    exp = presets.get("s4l_exemplar", "synthetic")
    assert exp.inception_crop and exp.exemplar_classify_crops
    image = tf.io.encode_png(tf.cast(tf.random.uniform([40, 40, 3], 0, 255), tf.uint8))
    seed = tf.constant([1, 2], tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=exp.exemplar_patches)
    recipe = augment.augment(image_ops.decode(image), seeds[0],
                             exp.replace(inception_crop=False)).numpy()
    cropped = augment.train_preprocess(image, seed, exp).numpy()
    first = augment.train_preprocess(
        image, seed, exp.replace(exemplar_classify_crops=False)).numpy()
    np.testing.assert_allclose(first[0], recipe, atol=1e-6)
    assert not np.allclose(cropped[0], recipe, atol=1e-3)
    np.testing.assert_allclose(first[1:], cropped[1:], atol=1e-6)  # the triplet's crops


def test_without_classified_crops_only_each_images_first_patch_carries_its_label():
    images = np.zeros((2, 3, 1, 1, 1), np.float32)
    stream = {"image": images, "label": np.array([5, 6])}
    assert "label_weight" not in loss_exemplar.flatten_patches(stream, "source_image")
    out = loss_exemplar.flatten_patches(stream, "source_image", classify_crops=False)
    np.testing.assert_array_equal(out["label_weight"], [3, 0, 0, 3, 0, 0])
    assert "label_weight" not in loss_exemplar.flatten_patches(
        {"image": images}, "source_image", classify_crops=False)  # unlabelled stream
    exp = presets.get("s4l_exemplar", dataset="synthetic").replace(
        num_labelled_examples=32, batch_size=4, exemplar_classify_crops=False)
    rng = np.random.default_rng(6)
    patches = exp.exemplar_patches
    batch = {"labelled": {"image": rng.uniform(-1, 1, (4, patches, 32, 32, 3)).astype(
                 np.float32), "label": np.arange(4, dtype=np.int32)},
             "unlabelled": {"image": rng.uniform(-1, 1, (4, patches, 32, 32, 3)).astype(
                 np.float32)}}
    model = training.build_model(exp)
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["supervised_loss"])) and float(logs["exemplar_loss"]) > 0
    # The training accuracy counts the 4 classified patches, not all 4 * P.
    assert float(model.top1.count) == 4.0


def test_exemplar_imagenet_preset_equals_original_config():
    exp = presets.get("s4l_exemplar", "imagenet")
    assert (exp.batch_size, exp.unsup_batch_size, exp.weight_decay, exp.lr,
            exp.lr_scale_batch_size, exp.eval_batch_size) == (512, 512, 1e-3, 0.1, 0, 40)
    assert exp.schedule_epochs == (10, 140, 160, 180, 200)
    assert exp.losses == {"supervised": 1.0, "exemplar": 1.0}
    assert (exp.exemplar_patches, exp.triplet_embed_dim, exp.hsvnoise) == (8, 1000, True)
    # Mined within 16 images, as each core of the original's v3-32 did.
    assert exp.exemplar_mining_images == 16
    assert exp.exemplar_identity == "source_image"


def test_term_mixes_the_streams_and_logs_how_many_anchors_are_ordered():
    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(3), 2).astype(np.int32)
    centres = np.repeat(np.eye(3, 5, dtype=np.float32), 2, axis=0)
    tight = centres + 0.01 * rng.normal(size=(6, 5)).astype(np.float32)  # every anchor ordered
    mixed = rng.normal(size=(6, 5)).astype(np.float32)
    tracked, step = tracking_step(presets.get("s4l_exemplar"))
    per_example = loss_exemplar.term(
        {"embeddings_sup": tight, "embeddings_unsup": mixed},
        {"labelled": {"identity": ids}, "unlabelled": {"identity": ids}}, step)
    expected = 0.5 * _np_triplet(mixed, ids).mean() + 0.5 * _np_triplet(tight, ids).mean()
    np.testing.assert_allclose(float(tf.nn.compute_average_loss(per_example)), expected,
                               rtol=1e-5)
    # Reference: an anchor is ordered when its farthest same-image row is nearer than its
    # nearest other-image row (brute force, as _np_triplet).
    ordered = []
    for e in (tight, mixed):
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        for i in range(6):
            d = np.linalg.norm(e - e[i], axis=1)
            pos = max(d[j] for j in range(6) if j != i and ids[j] == ids[i])
            ordered.append(pos < min(d[j] for j in range(6) if ids[j] != ids[i]))
    assert float(tracked["exemplar_ordered_rate"]) == pytest.approx(np.mean(ordered))
    assert np.mean(ordered[:6]) == 1.0 and np.mean(ordered) < 1.0


def test_exemplar_train_step():
    exp = presets.get("s4l_exemplar", "synthetic").replace(
        batch_size=2, num_labelled_examples=8, exemplar_patches=3)
    model = training.build_model(exp)
    rng = np.random.default_rng(2)
    batch = {"labelled": {"image": rng.uniform(-1, 1, (2, 3, 32, 32, 3)).astype(np.float32),
                          "label": np.array([0, 1], np.int32)},
             "unlabelled": {"image": rng.uniform(-1, 1, (2, 3, 32, 32, 3)).astype(np.float32)}}
    logs = model.train_step(batch)
    assert {"supervised_loss", "exemplar_loss", "exemplar_ordered_rate"} <= set(logs)
    assert 0.0 <= float(logs["exemplar_ordered_rate"]) <= 1.0
    assert np.isfinite(float(logs["exemplar_loss"]))
    assert model.extra_heads["embeddings"].units == exp.triplet_embed_dim


def test_rotation_and_exemplar_cannot_combine():
    with pytest.raises(ValueError, match="cannot combine rotation and exemplar"):
        experiment.Experiment(losses={"rotation": 1.0, "exemplar": 1.0},
                              unsup_batch_mult=1.0).validate()
