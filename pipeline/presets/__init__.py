"""Named presets: one file per original S4L config; `get(name, dataset, labels)`."""

from __future__ import annotations

from collections.abc import Callable

from modules.trainer.experiment import Experiment
from pipeline.presets import s4l_rotation, supervised

PRESETS: dict[str, Callable[..., Experiment]] = {
    "supervised": supervised.get_config,
    "s4l_rotation": s4l_rotation.get_config,
}


def get(name: str, dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    """The preset `name` for `dataset` and `labels`, validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](dataset=dataset, labels=labels).validate()
