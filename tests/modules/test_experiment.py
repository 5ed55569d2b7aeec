"""The experiment schema, presets and their validation."""

import pytest

from modules.trainer.experiment import Experiment, for_dataset
from pipeline import presets


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
@pytest.mark.parametrize("dataset", ["imagenet", "fashion_mnist", "synthetic"])
@pytest.mark.parametrize("labels", ["1pct", "10pct"])
def test_every_preset_validates_and_round_trips(name, dataset, labels):
    exp = presets.get(name, dataset=dataset, labels=labels)
    assert Experiment.from_dict(exp.to_dict()) == exp
    assert exp.name == name and exp.dataset == dataset


@pytest.mark.parametrize("labels,values", [
    ("10pct", dict(batch_size=256, weight_decay=1e-3, lr=0.1, lr_scale_batch_size=256,
                   schedule_epochs=(5, 140, 160, 180, 200), num_labelled_examples=128_000,
                   hsvnoise=False)),
    ("1pct", dict(batch_size=256, weight_decay=1e-2, lr=0.01, lr_scale_batch_size=256,
                  schedule_epochs=(5, 700, 800, 900, 1000), num_labelled_examples=13_000,
                  hsvnoise=True, cache_labelled=True)),
])
def test_supervised_imagenet_equals_original_config(labels, values):
    exp = presets.get("supervised", dataset="imagenet", labels=labels)
    for field, value in values.items():
        assert getattr(exp, field) == value, field
    assert (exp.architecture, exp.filters_factor, exp.unsup_batch_size) == ("resnet50v2", 4, 0)
    assert (exp.bn_momentum, exp.bn_epsilon, exp.momentum) == (0.99, 1e-3, 0.9)
    assert (exp.image_size, exp.resize_size, exp.num_classes) == (224, 256, 1000)


def test_unknown_fields_are_rejected():
    with pytest.raises(ValueError, match="unknown experiment field"):
        Experiment.from_dict({"nme": "x"})
    with pytest.raises(ValueError, match="unknown experiment field 'wd'"):
        Experiment().with_overrides({"wd": "1"})


def test_overrides_are_typed():
    exp = Experiment().with_overrides({"weight_decay": "5e-4", "flip_lr": "false",
                                       "schedule_epochs": "1,2,3", "losses": "supervised:0.5",
                                       "batch_size": "64"})
    assert exp.weight_decay == 5e-4 and exp.flip_lr is False and exp.batch_size == 64
    assert exp.schedule_epochs == (1.0, 2.0, 3.0) and exp.losses == {"supervised": 0.5}
    with pytest.raises(ValueError, match="cannot parse"):
        Experiment().with_overrides({"batch_size": "many"})


@pytest.mark.parametrize("changes,message", [
    (dict(losses={"rotation_typo": 1.0}), "unknown loss"),
    (dict(architecture="vgg"), "architecture"),
    (dict(batch_size=0), "batch_size"),
    (dict(resize_size=16), "resize_size"),
    (dict(schedule_epochs=(5, 3, 10)), "schedule_epochs"),
    (dict(schedule_epochs=(1, 2.5)), "whole number"),
    (dict(strategy="tpu"), "tpu_address"),
    (dict(strategy="horovod"), "strategy"),
    (dict(image_fit="stretch"), "image_fit"),
    (dict(lr_schedule="linear"), "lr_schedule"),
    (dict(architecture="resnet_cifar_v2", resnet_depth=21), "resnet_depth"),
    (dict(pad_crop=-1), "pad_crop"),
])
def test_validate_names_preset_and_field(changes, message):
    with pytest.raises(ValueError, match=f"experiment 'supervised'.*{message}|{message}"):
        Experiment().replace(**changes).validate()


def test_unknown_preset_and_dataset():
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get("mean_teacher")
    with pytest.raises(ValueError, match="unknown dataset"):
        for_dataset("cifar")


@pytest.mark.parametrize("field,text", [
    ("lr", "nan"), ("lr", "inf"), ("weight_decay", "nan"), ("polyak_half_life_epochs", "inf"),
    ("losses", "supervised:nan"), ("schedule_epochs", "1,inf"), ("vat_eps", "inf"),
])
def test_nan_and_infinite_values_are_refused(field, text):
    with pytest.raises(ValueError, match=f"{field}=.* must be finite"):
        Experiment().with_overrides({field: text}).validate()


@pytest.mark.parametrize("field,value,message", [
    ("momentum", 1.0, r"must be in \[0, 1\)"), ("momentum", -0.1, r"must be in \[0, 1\)"),
    ("bn_epsilon", 0.0, "must be > 0"), ("lr_decay_factor", 0.0, r"must be in \(0, 1\]"),
    ("lr_decay_factor", 2.0, r"must be in \(0, 1\]"),
])
def test_optimizer_and_batch_norm_settings_are_checked(field, value, message):
    with pytest.raises(ValueError, match=f"{field}={value}.* {message}"):
        Experiment().replace(**{field: value}).validate()


def test_an_unknown_kernel_initializer_is_refused():
    with pytest.raises(ValueError, match="kernel_init='zeros' must be one of glorot_uniform, "
                                         "he_normal"):
        Experiment().replace(kernel_init="zeros").validate()


@pytest.mark.parametrize("field,value", [
    ("name", "../x"), ("name", "a/b"), ("name", ".hidden"), ("name", ""),
    ("init_from", "../../etc"), ("pseudo_labels_from", "x y"),
])
def test_names_that_would_leave_their_folder_are_refused(field, value):
    with pytest.raises(ValueError, match=f"{field}=.* names folders"):
        Experiment().replace(**{field: value}).validate()
    assert Experiment().replace(name="my-run_2").validate().name == "my-run_2"
