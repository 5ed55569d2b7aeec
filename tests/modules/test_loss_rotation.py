"""S4L-Rotation against independent NumPy references (docs/original_s4l.md §4.2)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import tracking_step
from modules.trainer import experiment, loss_rotation, loss_supervised, schedules, training
from pipeline import presets


def _np_ce(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(labels)), labels]


def test_rotate_batch_is_image_major_ccw():
    images = np.random.default_rng(0).normal(size=(3, 5, 5, 2)).astype(np.float32)
    out = loss_rotation.rotate_batch(tf.constant(images)).numpy()
    assert out.shape == (12, 5, 5, 2)
    for i in range(3):
        for k in range(4):
            # np.rot90 on axes (0, 1) is counter-clockwise, like tf.image.rot90.
            np.testing.assert_array_equal(out[4 * i + k], np.rot90(images[i], k, axes=(0, 1)))


def test_rotation_labels_and_repeated_class_labels():
    stream = loss_rotation.rotate_stream({"image": tf.zeros([2, 4, 4, 3]),
                                          "label": tf.constant([7, 9])})
    np.testing.assert_array_equal(stream["rotation"], [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(stream["label"], [7, 7, 7, 7, 9, 9, 9, 9])


def test_supervised_term_on_upright_copies_only():
    """rotation_classify_turns=False: the supervised term is the mean CE of the upright
    copies; the turned copies still carry rotation labels."""
    images = tf.random.uniform([3, 4, 4, 3])
    labels = tf.constant([1, 0, 2])
    exp = presets.get("s4l_rotation", "synthetic")
    turns = loss_rotation.prepare({"labelled": {"image": images, "label": labels}}, exp)
    upright = loss_rotation.prepare({"labelled": {"image": images, "label": labels}},
                                    exp.replace(rotation_classify_turns=False))
    assert "label_weight" not in turns["labelled"]
    np.testing.assert_array_equal(upright["labelled"]["rotation"], turns["labelled"]["rotation"])
    logits = np.random.default_rng(4).normal(size=(12, 3)).astype(np.float32)
    ce = _np_ce(logits, np.repeat([1, 0, 2], 4))
    _, step = tracking_step(exp)
    for batch, expected in ((turns, ce.mean()), (upright, ce[0::4].mean())):
        per_example = loss_supervised.term({"classes_sup": logits}, batch, step)
        np.testing.assert_allclose(float(tf.nn.compute_average_loss(per_example)), expected,
                                   rtol=1e-5)


def test_rotation_loss_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(8, 4)).astype(np.float32)
    labels = np.tile(np.arange(4), 2)
    np.testing.assert_allclose(loss_rotation.rotation_loss(logits, labels),
                               _np_ce(logits, labels), rtol=1e-5)


def test_confident_correct_head_gives_zero_loss():
    labels = loss_rotation.rotation_labels(3)
    logits = 50.0 * tf.one_hot(labels, 4)
    assert float(tf.reduce_max(loss_rotation.rotation_loss(logits, labels))) < 1e-6


@pytest.mark.parametrize("n_unsup,n_sup", [(8, 8), (16, 4)])
def test_term_averages_the_two_halves_equally(n_unsup, n_sup):
    rng = np.random.default_rng(2)
    out_u = rng.normal(size=(n_unsup, 4)).astype(np.float32)
    out_s = rng.normal(size=(n_sup, 4)).astype(np.float32)
    lab_u, lab_s = np.arange(n_unsup) % 4, np.arange(n_sup) % 4
    tracked, step = tracking_step(presets.get("s4l_rotation"))
    per_example = loss_rotation.term(
        {"rotations_unsup": out_u, "rotations_sup": out_s},
        {"unlabelled": {"rotation": lab_u}, "labelled": {"rotation": lab_s}}, step)
    assert per_example.shape == (n_unsup + n_sup,)
    expected = 0.5 * _np_ce(out_u, lab_u).mean() + 0.5 * _np_ce(out_s, lab_s).mean()
    np.testing.assert_allclose(float(tf.nn.compute_average_loss(per_example)), expected,
                               rtol=1e-5)
    # The diagnostic counts every turned image of both streams alike.
    right = np.concatenate([out_u.argmax(1) == lab_u, out_s.argmax(1) == lab_s])
    assert float(tracked["rotation_accuracy"]) == pytest.approx(right.mean())


@pytest.mark.parametrize("step,expected", [(2_500, 0.03), (70_001, 3e-3), (99_999, 3e-5)])
def test_s4l_rotation_imagenet_lr(step, expected):
    lr = schedules.learning_rate(presets.get("s4l_rotation", dataset="imagenet"))
    assert float(lr(step)) == pytest.approx(expected, rel=1e-6)


def test_s4l_rotation_imagenet_equals_original_config():
    exp = presets.get("s4l_rotation", dataset="imagenet")
    assert (exp.batch_size, exp.unsup_batch_size, exp.weight_decay, exp.lr,
            exp.lr_scale_batch_size) == (256, 256, 1e-3, 0.03, 0)
    assert exp.schedule_epochs == (5, 140, 160, 180, 200)
    assert exp.losses == {"supervised": 1.0, "rotation": 1.0}
    assert (exp.eval_batch_size, exp.num_labelled_examples) == (16, 128_000)
    assert schedules.total_steps(exp) == 100_000


def test_rotation_train_step_and_rotation_averaged_eval():
    exp = presets.get("s4l_rotation", dataset="synthetic").replace(
        num_labelled_examples=32, batch_size=4)
    model = training.build_model(exp)
    rng = np.random.default_rng(3)
    batch = {"labelled": {"image": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
                          "label": np.arange(4, dtype=np.int32)},
             "unlabelled": {"image": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)}}
    logs = model.train_step(batch)
    assert {"supervised_loss", "rotation_loss", "total_loss", "rotation_accuracy"} <= set(logs)
    assert 0.0 <= float(logs["rotation_accuracy"]) <= 1.0
    assert not any(name.startswith("rot_avg") for name in logs)
    assert np.isfinite(float(logs["rotation_loss"]))
    results = model.test_step((batch["labelled"]["image"], batch["labelled"]["label"]))
    assert {"top1", "rot_avg_top1", "rot_avg_top5"} <= set(results)
    # Reference: logits of each rotation computed separately, averaged, then top-1.
    images, labels = batch["labelled"]["image"], batch["labelled"]["label"]
    averaged = np.mean([model(np.rot90(images, k, axes=(1, 2)).copy(),
                              training=False)["classes"].numpy() for k in range(4)], axis=0)
    expected = np.mean(averaged.argmax(axis=1) == labels)
    assert float(results["rot_avg_top1"]) == pytest.approx(expected)


def test_train_step_with_the_classifier_on_upright_copies_only():
    exp = presets.get("s4l_rotation", dataset="synthetic").replace(
        num_labelled_examples=32, batch_size=4, rotation_classify_turns=False)
    rng = np.random.default_rng(5)
    batch = {"labelled": {"image": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
                          "label": np.arange(4, dtype=np.int32)},
             "unlabelled": {"image": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)}}
    model = training.build_model(exp)
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["supervised_loss"])) and float(logs["supervised_loss"]) > 0
    assert np.isfinite(float(logs["rotation_loss"]))
    # The training accuracy counts the 4 upright rows the classifier trains on, not all 16.
    assert float(model.top1.count) == 4.0 and float(model.top5.count) == 4.0
    with_turns = training.build_model(exp.replace(rotation_classify_turns=True))
    with_turns.train_step(batch)
    assert float(with_turns.top1.count) == 16.0


def test_rotation_average_is_left_out_of_evaluations_during_training():
    exp = presets.get("s4l_rotation", dataset="synthetic").replace(
        num_labelled_examples=8, batch_size=4, eval_every_epochs=1)
    model = training.build_model(exp)
    images = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    labels = np.arange(8, dtype=np.int32) % exp.num_classes
    model.set_rotation_average(False)
    assert set(model.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)) == {
        "top1", "top5"}
    model.set_rotation_average(True)
    assert {"rot_avg_top1", "rot_avg_top5"} <= set(
        model.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True))
    # A model whose experiment does not ask for it never reports it.
    upright = training.build_model(exp.replace(eval_rotation_average=False))
    upright.set_rotation_average(True)
    assert "rot_avg_top1" not in upright.evaluate(images, labels, batch_size=4, verbose=0,
                                                  return_dict=True)


def test_rotation_needs_no_change_to_experiment_validation():
    exp = experiment.Experiment(losses={"supervised": 1.0, "rotation": 1.0})
    assert exp.validate() is exp
