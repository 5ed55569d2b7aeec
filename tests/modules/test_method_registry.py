"""The method registry: every loss file's SPEC, and what the Trainer derives from them."""

import numpy as np
import pytest
import tensorflow as tf

from modules.trainer import experiment, methods
from pipeline import presets


def test_every_loss_name_has_one_spec_and_the_light_mirrors_agree():
    assert tuple(methods.SPECS) == experiment.METHOD_LOSSES
    assert {name for name, spec in methods.SPECS.items() if spec.prepare} == set(
        experiment.INPUT_LAYOUT_LOSSES)
    assert all(spec.name == name for name, spec in methods.SPECS.items())


@pytest.mark.parametrize("preset,heads,views,patches,strong", [
    ("supervised", {}, 1, 1, False),
    ("s4l_rotation", {"rotations": 4}, 4, 1, False),
    ("s4l_exemplar", {"embeddings": 128}, 4, 4, False),
    ("vat_entmin", {}, 1, 1, False),
    ("moam_step_1", {"rotations": 4}, 4, 1, False),
    ("fixmatch", {}, 1, 1, True),
    ("moam_fixmatch_step_1", {"rotations": 4}, 4, 1, True),
])
def test_what_each_preset_gets_from_the_registry(preset, heads, views, patches, strong):
    exp = presets.get(preset, "fashion_mnist", "1pct")
    assert methods.heads(exp) == heads
    assert methods.views(exp) == views
    assert methods.train_patches(exp) == patches
    assert methods.uses_strong_view(exp) is strong
    assert methods.needs_exact_float32(exp) is ("vat" in exp.losses)


def test_prepare_turns_every_image_for_rotation():
    exp = presets.get("s4l_rotation", "fashion_mnist", "1pct")
    batch = {"labelled": {"image": tf.zeros([2, 8, 8, 3]), "label": tf.constant([1, 2])},
             "unlabelled": {"image": tf.zeros([3, 8, 8, 3])}}
    prepared = methods.prepare(batch, exp)
    assert prepared["labelled"]["image"].shape[0] == 8
    assert prepared["unlabelled"]["rotation"].numpy().tolist() == [0, 1, 2, 3] * 3
    supervised = presets.get("supervised", "fashion_mnist", "1pct")
    assert methods.prepare(batch, supervised) is batch


def test_fixmatch_stacks_the_views_before_rotation_turns_every_one():
    exp = presets.get("moam_fixmatch_step_1", "fashion_mnist", "1pct")
    weak = tf.reshape(tf.range(2 * 4 * 4 * 3, dtype=tf.float32), [2, 4, 4, 3])
    batch = {"labelled": {"image": weak[:1], "label": tf.constant([5])},
             "unlabelled": {"image": weak, "strong": -weak}}
    prepared = methods.prepare(batch, exp)["unlabelled"]
    images = prepared["image"].numpy()
    assert images.shape == (16, 4, 4, 3)  # [4 turns of 2 weak views ; of 2 strong views]
    # Row j of the strong half is row j of the weak half's image and turn, strongly viewed.
    np.testing.assert_array_equal(images[8:], -images[:8])
    np.testing.assert_array_equal(images[5], np.rot90(weak[1].numpy(), 1))
    assert prepared["rotation"].numpy().tolist() == [0, 1, 2, 3] * 4


def test_two_layout_changing_terms_are_refused():
    exp = presets.get("fixmatch", "fashion_mnist", "1pct")
    with pytest.raises(ValueError, match="cannot combine fixmatch and exemplar"):
        exp.replace(losses={"supervised": 1.0, "fixmatch": 1.0, "exemplar": 1.0}).validate()
    with pytest.raises(ValueError, match="cannot combine rotation and exemplar and fixmatch"):
        exp.replace(losses={"rotation": 1.0, "exemplar": 1.0, "fixmatch": 1.0}).validate()
    exp.replace(losses={"rotation": 1.0, "fixmatch": 1.0}).validate()  # MOAM's variant
