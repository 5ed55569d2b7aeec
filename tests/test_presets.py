"""Every preset against the original configs (docs/original_s4l.md §5.3) and the CPU rule."""

import pytest

from modules.trainer import experiment, methods, schedules
from pipeline import presets

# config: (B, B_u, ff, wd, lr flag, lr_scale_bs, base LR, schedule, N_lab, steps/epoch,
#          total steps, warm-up steps, decay steps) -- docs/original_s4l.md §5.3, ImageNet 10 %.
SPEC_5_3 = {
    "supervised": (256, 0, 4, 1e-3, 0.1, 256, 0.1, (5, 140, 160, 180, 200), 128_000, 500,
                   100_000, 2_500, [70_000, 80_000, 90_000]),
    "s4l_rotation": (256, 256, 4, 1e-3, 0.03, 0, 0.03, (5, 140, 160, 180, 200), 128_000, 500,
                     100_000, 2_500, [70_000, 80_000, 90_000]),
    "s4l_exemplar": (512, 512, 4, 1e-3, 0.1, 0, 0.1, (10, 140, 160, 180, 200), 128_000, 250,
                     50_000, 2_500, [35_000, 40_000, 45_000]),
    "vat": (256, 256, 4, 1e-3, 0.03, 0, 0.03, (5, 140, 160, 180, 200), 128_000, 500,
            100_000, 2_500, [70_000, 80_000, 90_000]),
    "vat_entmin": (256, 256, 4, 1e-3, 0.03, 0, 0.03, (5, 140, 160, 180, 200), 128_000, 500,
                   100_000, 2_500, [70_000, 80_000, 90_000]),
    "moam_step_1": (128, 128, 16, 2e-4, 0.2, 256, 0.1, (10, 100, 150, 190, 200), 128_000,
                    1_000, 200_000, 10_000, [100_000, 150_000, 190_000]),
    "pseudo_labels": (256, 0, 4, 1e-4, 0.1, 256, 0.1, (5, 30, 60, 90, 100), 1_281_167, 5_004,
                      500_400, 25_020, [150_120, 300_240, 450_360]),
}


@pytest.mark.parametrize("name", sorted(SPEC_5_3))
def test_imagenet_presets_equal_the_spec_table(name):
    (batch, unsup, ff, wd, lr, scale, base, schedule, n_lab, per_epoch, total, warmup,
     decays) = SPEC_5_3[name]
    exp = presets.get(name, "imagenet")
    assert (exp.batch_size, exp.unsup_batch_size, exp.filters_factor, exp.weight_decay,
            exp.lr, exp.lr_scale_batch_size) == (batch, unsup, ff, wd, lr, scale)
    assert exp.base_lr == pytest.approx(base)
    assert exp.schedule_epochs == schedule
    assert exp.num_labelled_examples == n_lab
    assert schedules.steps_per_epoch(exp) == per_epoch
    assert schedules.total_steps(exp) == total
    assert schedules.warmup_steps(exp) == warmup
    assert schedules.decay_boundaries(exp) == decays
    assert (exp.image_size, exp.resize_size, exp.architecture) == (224, 256, "resnet50v2")


def test_supervised_1pct_equals_its_config():
    exp = presets.get("supervised", "imagenet", "1pct")
    assert (exp.weight_decay, exp.lr, exp.num_labelled_examples) == (1e-2, 0.01, 13_000)
    assert exp.schedule_epochs == (5, 700, 800, 900, 1000)
    assert exp.hsvnoise and exp.cache_labelled
    assert (schedules.steps_per_epoch(exp), schedules.total_steps(exp)) == (50, 50_000)
    assert schedules.decay_boundaries(exp) == [35_000, 40_000, 45_000]


def test_moam_step_1_losses_and_flags():
    exp = presets.get("moam_step_1", "imagenet")
    # L = (1 - 0.3 - 0.3) L_rot + 0.3 L_cls + 0.3 L_vat + 0.3 L_ent (spec section 4.5).
    assert exp.losses == {"rotation": 0.4, "supervised": 0.3, "vat": 0.3, "entmin": 0.3}
    assert (exp.vat_eps, exp.vat_xi, exp.apply_vat_to_labelled) == (32.0, 1e-6, False)
    assert exp.polyak_averaging and exp.eval_rotation_average
    assert exp.checkpoint_every_epochs == 10  # 10,000 steps of 1,000


def test_multi_stage_presets_list_their_dependencies():
    assert [e.name for e in presets.stages("pseudo_labels")] == ["supervised", "pseudo_labels"]
    moam = presets.stages("moam_step_3", "imagenet")
    assert [e.name for e in moam] == ["moam_step_1", "moam_step_2", "moam_step_3"]
    assert moam[1].pseudo_labels_from == "moam_step_1" and moam[1].filters_factor == 16
    assert moam[2].init_from == "moam_step_2" and moam[2].filters_factor == 16
    assert [e.name for e in presets.stages("vat")] == ["vat"]


@pytest.mark.parametrize("dataset", ["imagenet", "fashion_mnist"])
def test_fixmatch_pseudo_labels_is_the_pseudo_labels_student_of_fixmatch(dataset):
    chain = presets.stages("fixmatch_pseudo_labels", dataset)
    assert [e.name for e in chain] == ["fixmatch", "fixmatch_pseudo_labels"]
    assert chain[0] == presets.get("fixmatch", dataset)
    assert chain[1] == presets.get("pseudo_labels", dataset).replace(
        name="fixmatch_pseudo_labels", pseudo_labels_from="fixmatch",
        pseudo_label_views="averaged")


@pytest.mark.parametrize("dataset", ["imagenet", "fashion_mnist"])
def test_second_round_is_the_same_student_on_the_first_students_labels(dataset):
    chain = presets.stages("fixmatch_pseudo_labels_round_2", dataset)
    assert [e.name for e in chain] == [
        "fixmatch", "fixmatch_pseudo_labels", "fixmatch_pseudo_labels_round_2"]
    assert chain[2] == chain[1].replace(name="fixmatch_pseudo_labels_round_2",
                                        pseudo_labels_from="fixmatch_pseudo_labels")


@pytest.mark.parametrize("dataset", ["imagenet", "fashion_mnist"])
def test_moam_fixmatch_swaps_step_1s_consistency_terms_and_the_views(dataset):
    family = presets.stages("moam_fixmatch_step_3", dataset)
    paper = presets.stages("moam_step_3", dataset)
    # On small images the FixMatch variant keeps the recipe's strong labelled views (MOAM keeps
    # weak ones in every step, for step 1's EntMin) and its step 2 averages step 1's views.
    small = dataset != "imagenet"
    views = {"labelled_augment": "strong" if small else "weak"}
    assert [e.labelled_augment for e in paper] == ["weak"] * 3
    assert [e.name for e in family] == [
        "moam_fixmatch_step_1", "moam_fixmatch_step_2", "moam_fixmatch_step_3"]
    step_1, fixmatch = family[0], presets.get("fixmatch", dataset)
    assert step_1.losses == {"rotation": 0.4, "supervised": 0.3, "fixmatch": 0.3}
    assert (step_1.fixmatch_threshold, step_1.strong_ops, step_1.cutout_size) == (
        fixmatch.fixmatch_threshold, fixmatch.strong_ops, fixmatch.cutout_size)
    assert step_1.labelled_augment == views["labelled_augment"]
    assert step_1.replace(name="moam_step_1", losses=paper[0].losses,
                          fixmatch_threshold=paper[0].fixmatch_threshold,
                          strong_ops=paper[0].strong_ops, cutout_size=paper[0].cutout_size,
                          labelled_augment="weak") == paper[0]
    assert family[1] == paper[1].replace(
        name="moam_fixmatch_step_2", pseudo_labels_from="moam_fixmatch_step_1",
        pseudo_label_views="averaged" if small else "upright", **views)
    assert family[2] == paper[2].replace(name="moam_fixmatch_step_3",
                                         init_from="moam_fixmatch_step_2", **views)


@pytest.mark.parametrize("dataset", ["imagenet", "fashion_mnist"])
@pytest.mark.parametrize("labels", ["1pct", "10pct"])
def test_upright_variants_change_only_the_classifiers_input(dataset, labels):
    rotation = presets.get("s4l_rotation", dataset, labels)
    assert presets.get("s4l_rotation_upright", dataset, labels) == rotation.replace(
        name="s4l_rotation_upright", rotation_classify_turns=False, eval_rotation_average=False)
    exemplar = presets.get("s4l_exemplar", dataset, labels)
    assert exemplar.exemplar_classify_crops
    assert presets.get("s4l_exemplar_upright", dataset, labels) == exemplar.replace(
        name="s4l_exemplar_upright", exemplar_classify_crops=False)


def test_labelled_views_are_strong_on_small_images_except_where_a_loss_needs_weak_ones():
    """Exemplar's patches are its views; EntMin collapsed with strong labelled views (VAT +
    EntMin, and MOAM for its step 1); the ImageNet presets keep the originals' views."""
    weak = {"s4l_exemplar", "s4l_exemplar_upright", "vat_entmin", "moam_step_1", "moam_step_2",
            "moam_step_3"}
    for name in presets.PRESETS:
        for dataset in ("fashion_mnist", "synthetic"):
            assert presets.get(name, dataset).labelled_augment == (
                "weak" if name in weak else "strong"), (name, dataset)
        assert presets.get(name, "imagenet").labelled_augment == "weak", name


def test_small_image_presets_share_one_recipe():
    """Every small-image preset: the same backbone, input op, optimizer and labelled batch,
    at both label budgets (the run length comes from the data, hyper_rule.py)."""
    for labels in ("10pct", "1pct"):
        for name in presets.PRESETS:
            exp = presets.get(name, "fashion_mnist", labels)
            assert (exp.architecture, exp.resnet_depth, exp.filters_factor, exp.image_size,
                    exp.image_fit, exp.pad_crop) == (
                "resnet_cifar_v2", 20, 4, 32, "zero_pad", 4), name
            assert (exp.batch_size, exp.nesterov, exp.lr_schedule, exp.weight_decay) == (
                experiment.SMALL_BATCH, True, "cosine", 5e-4), name
            assert exp == presets.get(name, "fashion_mnist", "1pct" if labels == "10pct"
                                      else "10pct").replace(labels=labels), name


def test_only_exemplar_keeps_the_inception_crop_on_small_images():
    for dataset in ("fashion_mnist", "synthetic"):
        for name in presets.PRESETS:
            exp = presets.get(name, dataset)
            assert exp.inception_crop == ("exemplar" in exp.losses), (name, dataset)
    # ImageNet keeps the originals' crop and resize.
    for name in presets.PRESETS:
        exp = presets.get(name, "imagenet")
        assert exp.inception_crop and exp.image_fit == "resize_crop" and not exp.pad_crop


def test_images_per_labelled_image_follows_the_forward_passes():
    get = presets.get
    assert methods.images_per_labelled_image(get("supervised")) == 1
    assert methods.images_per_labelled_image(get("s4l_rotation")) == 8  # 4 x (1 + 1)
    assert methods.images_per_labelled_image(get("s4l_exemplar")) == 8  # 4 x (1 + 1)
    assert methods.images_per_labelled_image(get("vat")) == 6  # clean 2 + 2 x 2 perturbed
    assert methods.images_per_labelled_image(get("moam_step_1")) == 16  # 8 + 2 x 4
    # 4 turns x (labelled + weak + strong)
    assert methods.images_per_labelled_image(get("moam_fixmatch_step_1")) == 12


def test_vat_eps_keeps_the_per_value_rms():
    assert presets.get("vat").vat_eps == pytest.approx(40 * 32 / 224)
    assert presets.get("moam_step_1").vat_eps == pytest.approx(32 * 32 / 224)
