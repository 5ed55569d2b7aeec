"""Typed settings that `create_pipeline` takes besides the experiment (no I/O here)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how the labelled subset is chosen."""

    source: str = "fashion_mnist"
    data_path: str = ""
    labelled_fraction: float = 0.1
    label_map_path: str = ""
    seed: int = 0
    exclude_labelled: bool = False
    num_shards: int = 4
    # > 0: evaluate on this many held-out training images instead of the test set (tuning).
    validation_images: int = 0
    num_classes: int = 1000
    label_offset: int = 1
    # Changes when the source files change, so ExampleGen is not served from cache.
    fingerprint: str = ""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Blessing thresholds: a floor on overall top-1 and the drop allowed against the
    latest blessed model (TFMA skips the change threshold on the first run)."""

    min_top1: float = 0.5
    max_top1_drop: float = 0.01
