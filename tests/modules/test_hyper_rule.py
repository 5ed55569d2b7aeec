"""The schedule rule: a run's length from the labelled split's size, not a data set's name."""

import pytest

from modules.trainer import hyper_rule, schedules
from pipeline import presets


def _fit(name: str, labelled: int, dataset: str = "fashion_mnist"):
    exp = presets.get(name, dataset).replace(num_labelled_examples=labelled)
    return hyper_rule.fit_schedule(exp)


@pytest.mark.parametrize("labelled,epochs,steps", [
    (600, 333, 2_997),    # 9 steps/epoch: 200 epochs = 1,800 steps, raised to ~3,000
    (1_400, 200, 4_200),  # 21 steps/epoch: 200 epochs fit the bounds as they are
    (3_000, 130, 5_980),  # 46 steps/epoch: 9,200 steps, lowered to ~6,000
    (6_000, 65, 6_045),   # 93 steps/epoch: the nearest whole epoch to 6,000 steps
])
def test_steps_follow_the_labelled_count(labelled, epochs, steps):
    exp = _fit("supervised", labelled)
    assert exp.schedule_epochs[-1] == epochs
    assert schedules.total_steps(exp) == steps
    # The warm-up keeps its 3 % of the run.
    assert exp.schedule_epochs[0] / exp.schedule_epochs[-1] == pytest.approx(0.03)


def test_a_small_folder_gets_a_real_schedule_not_forty_steps():
    """143 labelled images (10 % of a 1,437-image folder): 2 steps per epoch; the old rule
    trained 40 steps in all. The rule gives the minimum of 3,000."""
    exp = _fit("supervised", 143)
    assert schedules.total_steps(exp) == 3_000
    assert exp.eval_every_epochs == round(1_500 / hyper_rule.EVALUATIONS_PER_RUN)


def test_every_single_network_method_trains_the_same_steps():
    """The paper's protocol: equal labelled epochs and one labelled batch = equal steps."""
    for labelled in (600, 6_000):
        steps = {name: schedules.total_steps(_fit(name, labelled))
                 for name in ("supervised", "s4l_rotation", "s4l_exemplar", "vat",
                              "vat_entmin", "moam_step_1", "moam_fixmatch_step_1",
                              "fixmatch")}
        assert len(set(steps.values())) == 1, steps


def test_moam_step_3_is_a_short_fine_tune():
    step_3 = _fit("moam_step_3", 600)
    assert schedules.total_steps(step_3) == 30 * (600 // 64)
    assert step_3.base_lr == pytest.approx(presets.get("supervised").base_lr / 10)


def test_imagenet_presets_and_explicit_epochs_are_left_alone():
    imagenet = presets.get("supervised", "imagenet")
    assert not hyper_rule.applies(imagenet)
    assert hyper_rule.fit_schedule(imagenet) == imagenet
    unbounded = presets.get("supervised").replace(min_steps=0, max_steps=0,
                                                  num_labelled_examples=600)
    assert hyper_rule.fit_schedule(unbounded) == unbounded


def test_bounds_are_validated():
    exp = presets.get("supervised")
    with pytest.raises(ValueError, match="min_steps"):
        exp.replace(min_steps=10, max_steps=5).validate()
    with pytest.raises(ValueError, match="pad_crop"):
        exp.replace(max_steps=-1).validate()
