"""VAT and EntMin against independent references (docs/original_s4l.md §4.4)."""

import numpy as np
import pytest
import tensorflow as tf

from modules.trainer import loss_utils, loss_vat, methods, training
from pipeline import presets


def _np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_kl_and_entropy_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 7)).astype(np.float32)
    p, q = _np_softmax(a), _np_softmax(b)
    np.testing.assert_allclose(loss_utils.kl_divergence(a, b),
                               (p * (np.log(p) - np.log(q))).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(loss_utils.entropy(a), -(p * np.log(p)).sum(-1), rtol=1e-5)
    # Uniform predictions have the maximum entropy log K; KL of a distribution to itself is 0.
    assert float(loss_utils.entropy(np.zeros([1, 7], np.float32))[0]) == pytest.approx(
        np.log(7), rel=1e-6)
    np.testing.assert_allclose(loss_utils.kl_divergence(a, a), 0.0, atol=1e-6)


def test_perturbation_has_norm_eps_and_raises_the_kl():
    rng = np.random.default_rng(1)
    weights = tf.constant(rng.normal(size=(4 * 4 * 3, 5)).astype(np.float32))

    def classify(x):
        return tf.reshape(x, [tf.shape(x)[0], -1]) @ weights

    images = tf.constant(rng.uniform(-1, 1, (6, 4, 4, 3)).astype(np.float32))
    clean = classify(images)
    eps = 0.5
    r_adv = loss_vat.adversarial_perturbation(classify, images, clean, eps=eps, xi=1e-2,
                                              iterations=1, seed=tf.constant([0, 1]))
    norms = np.linalg.norm(r_adv.numpy().reshape(6, -1), axis=1)
    np.testing.assert_allclose(norms, eps, rtol=1e-5)
    random = rng.normal(size=(6, 48)).astype(np.float32)
    random = eps * random / np.linalg.norm(random, axis=1, keepdims=True)
    kl_adv = loss_utils.kl_divergence(classify(images + r_adv), clean).numpy()
    kl_random = loss_utils.kl_divergence(classify(images + random.reshape(6, 4, 4, 3)),
                                         clean).numpy()
    # The power step finds a direction the prediction is far more sensitive to.
    assert kl_adv.mean() > 2 * kl_random.mean()
    assert (kl_adv > kl_random).mean() >= 5 / 6


def test_tiny_gradient_still_gives_norm_eps_unless_original_normalisation():
    # A nearly flat classifier: the power step's gradient is ~1e-13 per example, far below
    # the 1e-6 at which the original's l2_normalize floor (1e-12 on |g|^2) takes over.
    rng = np.random.default_rng(4)
    weights = tf.constant(1e-4 * rng.normal(size=(48, 5)).astype(np.float32))

    def classify(x):
        return tf.reshape(x, [tf.shape(x)[0], -1]) @ weights

    images = tf.constant(rng.uniform(-1, 1, (6, 4, 4, 3)).astype(np.float32))
    kwargs = dict(eps=2.0, xi=1e-6, iterations=1, seed=tf.constant([0, 2]))
    exact = loss_vat.adversarial_perturbation(classify, images, classify(images), **kwargs)
    original = loss_vat.adversarial_perturbation(classify, images, classify(images),
                                                 exact_eps=False, **kwargs)
    np.testing.assert_allclose(np.linalg.norm(exact.numpy().reshape(6, -1), axis=1), 2.0,
                               rtol=1e-5)
    assert np.linalg.norm(original.numpy().reshape(6, -1), axis=1).max() < 1e-3
    # Each example keeps its direction; only the length differs.
    a, b = exact.numpy().reshape(6, -1), original.numpy().reshape(6, -1)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-5)


def _batch(exp, rng):
    return {"labelled": {"image": rng.uniform(-1, 1, (exp.batch_size, 32, 32, 3))
                         .astype(np.float32),
                         "label": rng.integers(0, 10, exp.batch_size).astype(np.int32)},
            "unlabelled": {"image": rng.uniform(-1, 1, (exp.unsup_batch_size, 32, 32, 3))
                           .astype(np.float32)}}


def test_target_set_covers_labelled_first_or_unlabelled_only():
    exp = presets.get("vat", "synthetic")
    outputs = {"classes_sup": np.zeros([2, 3]), "classes_unsup": np.ones([4, 3])}
    batch = {"labelled": {"image": np.zeros([2, 1, 1, 1])},
             "unlabelled": {"image": np.ones([4, 1, 1, 1])}}
    images, logits = loss_vat.target_set(outputs, batch, exp)
    np.testing.assert_array_equal(images[:, 0, 0, 0], [0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(logits[:, 0], [0, 0, 1, 1, 1, 1])
    images, _ = loss_vat.target_set(outputs, batch,
                                    exp.replace(apply_vat_to_labelled=False))
    assert images.shape[0] == 4


def test_perturbed_passes_leave_batch_norm_statistics_alone():
    exp = presets.get("vat_entmin", "synthetic").replace(
        batch_size=4, num_labelled_examples=16, lr=1e-9, weight_decay=0.0)
    batch = _batch(exp, np.random.default_rng(2))
    model = training.build_model(exp)
    reference = training.build_model(exp)
    reference.set_weights(model.get_weights())
    logs = model.train_step(batch)
    # Reference: only the clean shared pass updates the moving statistics.
    methods.forward(reference, batch, training=True)
    moving = [w for w in model.non_trainable_weights if "moving" in w.name]
    expected = [w for w in reference.non_trainable_weights if "moving" in w.name]
    assert moving
    for got, want in zip(moving, expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert {"vat_loss", "entmin_loss", "vat_r_adv_norm"} <= set(logs)
    assert float(logs["vat_r_adv_norm"]) == pytest.approx(exp.vat_eps, rel=1e-4)


def test_frozen_batch_norm_uses_batch_statistics():
    exp = presets.get("vat", "synthetic").replace(num_labelled_examples=16)
    model = training.build_model(exp)
    x = np.random.default_rng(3).normal(3.0, 2.0, (8, 32, 32, 3)).astype(np.float32)
    before = [w.numpy() for w in model.non_trainable_weights]
    with loss_vat.frozen_batch_norm(model):
        frozen = model.classify(x, training=True).numpy()
    after = [w.numpy() for w in model.non_trainable_weights]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    # Training-mode BN (batch statistics), not the inference-mode output.
    assert not np.allclose(frozen, model.classify(x, training=False).numpy(), atol=1e-3)
    # Momenta are restored after the block.
    assert model.backbone.get_layer("final_bn").momentum == exp.bn_momentum


@pytest.mark.parametrize("name,weights", [
    ("vat", {"supervised": 1.0, "vat": 0.5}),
    ("vat_entmin", {"supervised": 1.0, "vat": 0.5, "entmin": 1.0}),
])
def test_vat_imagenet_presets_equal_original_configs(name, weights):
    exp = presets.get(name, "imagenet")
    assert exp.losses == weights
    assert (exp.batch_size, exp.unsup_batch_size, exp.weight_decay, exp.lr,
            exp.lr_scale_batch_size) == (256, 256, 1e-3, 0.03, 0)
    assert (exp.vat_eps, exp.vat_xi, exp.vat_power_iters, exp.apply_vat_to_labelled) == (
        40.0, 1e-6, 1, True)
    assert exp.vat_exact_eps  # the one deliberate deviation (spec section 10.1 item 7)
    assert exp.schedule_epochs == (5, 140, 160, 180, 200)
