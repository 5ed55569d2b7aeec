"""Polyak averaging (docs/original_s4l.md §4.6): the EMA update, evaluation and export."""

import numpy as np
import pytest
import tensorflow as tf

from modules.trainer import experiment, polyak, training

EXP = experiment.for_dataset("synthetic").replace(num_labelled_examples=64,
                                                  polyak_averaging=True, weight_decay=0.0,
                                                  polyak_half_life_steps=0.0)


def _batch(rng, exp=EXP):
    return {"labelled": {"image": rng.uniform(-1, 1, (exp.batch_size, 32, 32, 3))
                         .astype(np.float32),
                         "label": rng.integers(0, 10, exp.batch_size).astype(np.int32)}}


def test_decay_has_a_half_life_of_one_epoch():
    assert polyak.decay_for(1000) == pytest.approx(0.9993071, abs=1e-7)
    assert polyak.decay_for(4) ** 4 == pytest.approx(0.5)
    # Half-lives in labelled epochs: 0.5 epoch of 10 steps halves the weight in 5 steps.
    assert polyak.decay_for(10, half_life_epochs=0.5) ** 5 == pytest.approx(0.5)


def test_small_image_presets_fix_the_half_life_in_steps():
    from pipeline import presets

    imagenet = presets.get("moam_step_1", "imagenet")
    assert (imagenet.polyak_half_life_epochs, imagenet.polyak_half_life_steps) == (1.0, 0.0)
    small = presets.get("moam_step_1", "fashion_mnist")
    assert small.polyak_half_life_steps == experiment.SMALL_POLYAK_HALF_LIFE_STEPS
    model = training.build_model(small.replace(num_labelled_examples=600))
    assert model.polyak.decay ** small.polyak_half_life_steps == pytest.approx(0.5)
    assert model.polyak.warm_up
    with pytest.raises(ValueError, match="polyak_half_life_epochs"):
        small.replace(polyak_half_life_epochs=0.0).validate()
    with pytest.raises(ValueError, match="polyak_half_life_steps"):
        small.replace(polyak_half_life_steps=-1.0).validate()


def test_warm_up_averages_from_the_first_steps():
    """With the warm-up, step t uses min(decay, (1 + t) / (10 + t)): 0.1 at the first
    update, so a short run's average is not held at the initial weights."""
    exp = EXP.replace(polyak_half_life_steps=1000.0)
    model = training.build_model(exp)
    assert model.polyak.warm_up
    expected = [v.numpy() for v in model.trainable_variables]
    rng = np.random.default_rng(0)
    for t in range(3):
        model.train_step(_batch(rng, exp))
        decay = min(model.polyak.decay, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * v.numpy()
                    for e, v in zip(expected, model.trainable_variables, strict=True)]
    assert int(model.polyak.updates) == 3
    for shadow, want in zip(model.polyak.shadows, expected, strict=True):
        np.testing.assert_allclose(shadow.numpy(), want, rtol=1e-5, atol=1e-6)


def test_ema_update_matches_numpy():
    model = training.build_model(EXP)
    decay = model.polyak.decay
    assert decay == pytest.approx(0.5 ** (1 / 4))  # 64 labelled / batch 16 = 4 steps/epoch
    expected = [v.numpy() for v in model.trainable_variables]  # starts at the initial weights
    rng = np.random.default_rng(0)
    for _ in range(3):
        model.train_step(_batch(rng))
        expected = [decay * e + (1 - decay) * v.numpy()
                    for e, v in zip(expected, model.trainable_variables, strict=True)]
    for shadow, want in zip(model.polyak.shadows, expected, strict=True):
        np.testing.assert_allclose(shadow.numpy(), want, rtol=1e-5, atol=1e-6)
    # BN moving statistics are not averaged; shadows are not Keras weights.
    assert len(model.polyak.shadows) == len(model.trainable_variables)
    assert not any("_ema" in w.name for w in model.weights)


def test_swap_is_undone_and_export_copy_holds_the_averages(tmp_path):
    model = training.build_model(EXP)
    rng = np.random.default_rng(1)
    for _ in range(2):
        model.train_step(_batch(rng))
    raw = [v.numpy() for v in model.trainable_variables]
    averages = [s.numpy() for s in model.polyak.shadows]
    callback = polyak.EvaluateWithAverages(model.polyak)
    callback.on_test_begin()
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), averages[0])
    callback.on_test_end()
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), raw[0])
    exported = training.local_copy(model)
    assert exported.polyak is None
    for variable, want in zip(exported.trainable_variables, averages, strict=True):
        np.testing.assert_array_equal(variable.numpy(), want)


def test_backups_keep_the_averages(tmp_path):
    model = training.build_model(EXP)
    model.train_step(_batch(np.random.default_rng(2)))
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored = training.build_model(EXP)
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored.polyak.shadows[3].numpy(),
                                  model.polyak.shadows[3].numpy())


def test_mixed_bfloat16_trains_and_keeps_float32_outputs():
    exp = EXP.replace(precision="mixed_bfloat16", polyak_averaging=False)
    model = training.build_model(exp)
    logs = model.train_step(_batch(np.random.default_rng(3), exp))
    assert np.isfinite(float(logs["total_loss"]))
    assert model.backbone.get_layer("root_conv").compute_dtype == "bfloat16"
    assert model.backbone.get_layer("root_conv").kernel.dtype == tf.float32
    outputs = model(np.zeros([2, 32, 32, 3], np.float32))
    assert outputs["classes"].dtype == tf.float32 and outputs["pre_logits"].dtype == tf.float32
    # The global policy is untouched for whatever is built next.
    assert tf.keras.mixed_precision.global_policy().name == "float32"


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="precision"):
        EXP.replace(precision="float16").validate()
