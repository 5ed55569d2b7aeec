"""The record each loss file exports: what its term brings to a method.

A method is a set of weighted loss terms (`Experiment.losses`). Everything the Trainer does
differently for a term (an extra head, a batch transform in the train step, extra views of the
unlabelled images, patches per training image, the network images it costs, diagnostics) is
read from its file's `SPEC`; `methods.py` collects them. A new method is one loss file with a
`SPEC` plus one preset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from modules.trainer.experiment import Experiment


def _no_heads(exp: Experiment) -> dict[str, int]:
    del exp
    return {}


def _one_view(exp: Experiment) -> int:
    del exp
    return 1


def _no_extra_passes(exp: Experiment) -> float:
    del exp
    return 0.0


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """One loss term and what it needs from the rest of the Trainer.

    Attributes:
      name: the key in `Experiment.losses`.
      term: (outputs, batch, StepContext) -> per-example losses; only training.py reduces.
      heads: extra linear heads on pre_logits, name -> units.
      prepare: (batch, exp) -> batch, applied in the train step before the forward pass.
        A method may have two only where `Experiment.validate` allows the pair (FixMatch's
        view stacking with rotation); they run in `prepare_order`.
      prepare_order: lower runs first: stacking a stream's views (0) comes before turning
        or flattening every image (1), so each view is turned like the others.
      views: network images per stream image after `prepare` (rotation 4, exemplar P).
      train_patches: images the input pipeline cuts from each training image (exemplar P);
        1 for every other term.
      strong_view: the unlabelled stream also carries a strongly augmented view.
      unlabelled_views: forward-pass views per unlabelled image (FixMatch: weak + strong).
      extra_passes: perturbed forward+backward images per labelled image, as a multiple of
        the clean pass (VAT's adversarial passes).
      diagnostics: scalars the term logs through StepContext.track.
      exact_float32_matmuls: TF32 must be off (VAT's finite differences).
    """

    name: str
    term: Callable[..., Any]
    heads: Callable[[Experiment], dict[str, int]] = _no_heads
    prepare: Callable[[dict, Experiment], dict] | None = None
    prepare_order: int = 1
    views: Callable[[Experiment], int] = _one_view
    train_patches: Callable[[Experiment], int] = _one_view
    strong_view: bool = False
    unlabelled_views: int = 1
    extra_passes: Callable[[Experiment], float] = _no_extra_passes
    diagnostics: tuple[str, ...] = ()
    exact_float32_matmuls: bool = False
