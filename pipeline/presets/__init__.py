"""Named presets: one per original S4L config; `get(name, dataset, labels)`.

Each preset carries the original's ImageNet hyper-parameters exactly (docs/original_s4l.md §5.3)
and, for small images (Fashion-MNIST, image folders), the method on the shared small-image
recipe (`experiment.for_dataset`), whose run length the schedule rule sets from the data
(`modules/trainer/hyper_rule.py`). Multi-stage methods name the presets they build on
(`pseudo_labels_from`, `init_from`); `stages(name, ...)` lists them in training order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from modules.trainer.experiment import Experiment
from pipeline.presets import (
    fixmatch,
    moam,
    pseudo_labels,
    s4l_exemplar,
    s4l_exemplar_upright,
    s4l_rotation,
    s4l_rotation_upright,
    supervised,
    vat,
    vat_entmin,
)

PRESETS: dict[str, Callable[..., Experiment]] = {
    "supervised": supervised.get_config,
    "s4l_rotation": s4l_rotation.get_config,
    "s4l_rotation_upright": s4l_rotation_upright.get_config,
    "s4l_exemplar": s4l_exemplar.get_config,
    "s4l_exemplar_upright": s4l_exemplar_upright.get_config,
    "vat": vat.get_config,
    "vat_entmin": vat_entmin.get_config,
    "pseudo_labels": pseudo_labels.get_config,
    "moam_step_1": moam.step_1,
    "moam_step_2": moam.step_2,
    "moam_step_3": moam.step_3,
    "fixmatch": fixmatch.get_config,
    "fixmatch_pseudo_labels": pseudo_labels.from_fixmatch,
    "fixmatch_pseudo_labels_round_2": pseudo_labels.second_round,
    "moam_fixmatch_step_1": functools.partial(moam.step_1, family="moam_fixmatch"),
    "moam_fixmatch_step_2": functools.partial(moam.step_2, family="moam_fixmatch"),
    "moam_fixmatch_step_3": functools.partial(moam.step_3, family="moam_fixmatch"),
}


def get(name: str, dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    """The preset `name` for `dataset` and `labels`, validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](dataset=dataset, labels=labels).validate()


def stages(name: str, dataset: str = "fashion_mnist", labels: str = "10pct") -> list[Experiment]:
    """`name` after every preset it depends on, in training order (e.g. moam_step_3 ->
    [moam_step_1, moam_step_2, moam_step_3])."""
    exp = get(name, dataset, labels)
    before: list[Experiment] = []
    for dependency in (exp.pseudo_labels_from, exp.init_from):
        if dependency:
            before += [s for s in stages(dependency, dataset, labels)
                       if s.name not in {b.name for b in before}]
    return [*before, exp]


def check_stages(experiments: Sequence[Experiment]) -> None:
    """Raises ValueError unless stage names are unique and every dependency comes earlier."""
    seen: set[str] = set()
    for exp in experiments:
        exp.validate()
        if exp.name in seen:
            raise ValueError(f"two stages are named {exp.name!r}")
        for field in ("pseudo_labels_from", "init_from"):
            dependency = getattr(exp, field)
            if dependency and dependency not in seen:
                raise ValueError(f"stage {exp.name!r}: {field}={dependency!r} must name an "
                                 f"earlier stage of the pipeline; earlier: {sorted(seen)}")
        seen.add(exp.name)
