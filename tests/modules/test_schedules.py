"""Learning-rate schedule and step counts from the table of docs/original_s4l.md §5.3."""

import pytest

from modules.trainer import schedules, training
from pipeline import presets


@pytest.mark.parametrize("step,expected", [
    (0, 0.0), (1_250, 0.05), (2_500, 0.1), (70_000, 0.1), (70_001, 0.01),
    (80_001, 1e-3), (90_001, 1e-4), (99_999, 1e-4)])
def test_supervised_imagenet_10pct_lr(step, expected):
    lr = schedules.learning_rate(presets.get("supervised", dataset="imagenet"))
    assert float(lr(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_supervised_imagenet_steps():
    exp = presets.get("supervised", dataset="imagenet")
    assert schedules.steps_per_epoch(exp) == 500
    assert schedules.total_steps(exp) == 100_000
    assert schedules.warmup_steps(exp) == 2_500
    assert schedules.decay_boundaries(exp) == [70_000, 80_000, 90_000]


def test_supervised_imagenet_1pct_steps_and_lr():
    exp = presets.get("supervised", dataset="imagenet", labels="1pct")
    assert schedules.steps_per_epoch(exp) == 50  # 13,000 // 256
    assert schedules.total_steps(exp) == 50_000
    assert schedules.decay_boundaries(exp) == [35_000, 40_000, 45_000]
    lr = schedules.learning_rate(exp)
    assert float(lr(250)) == pytest.approx(0.01)
    assert float(lr(45_001)) == pytest.approx(1e-5)


def test_unset_labelled_count_is_an_error():
    exp = presets.get("supervised", dataset="fashion_mnist")
    with pytest.raises(ValueError, match="num_labelled_examples is unset"):
        schedules.total_steps(exp)
    assert schedules.steps_per_epoch(exp.replace(num_labelled_examples=6000)) == 93


def test_small_image_recipe_is_cosine_with_linear_warm_up():
    exp = presets.get("supervised", "fashion_mnist").replace(num_labelled_examples=640)
    # 10 steps per epoch, 200 epochs: 60 warm-up steps (3 %), cosine to 0 at step 2,000.
    assert (schedules.steps_per_epoch(exp), schedules.total_steps(exp)) == (10, 2_000)
    lr = schedules.learning_rate(exp)
    base = exp.base_lr
    assert base == pytest.approx(0.05)  # 0.1 per 128 images at batch 64
    assert float(lr(0)) == 0.0
    assert float(lr(30)) == pytest.approx(base / 2)
    assert float(lr(60)) == pytest.approx(base)
    assert float(lr(60 + 970)) == pytest.approx(base / 2, rel=1e-3)  # half-way down
    assert float(lr(2_000)) == pytest.approx(0.0, abs=1e-7)
    optimizer = training.build_model(exp).optimizer
    assert optimizer.nesterov and optimizer.momentum == 0.9
