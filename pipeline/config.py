"""Typed settings that `create_pipeline` takes besides the experiment (no I/O here)."""

from __future__ import annotations

import dataclasses

from pipeline.components.example_gen import splits


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """How S4LExampleGen chooses the labelled subset and writes the splits; the one home of
    these defaults (the command line takes them from here). Checked when built.

    Raises:
      splits.SplitError: a fraction outside (0, 1] (without a label map), fewer than one
        shard, or a negative validation count.
    """

    labelled_fraction: float = 0.1
    label_map_path: str = ""
    seed: int = 0
    exclude_labelled: bool = False
    num_shards: int = 4
    # > 0: the eval split is this many training images (class-balanced, seeded), held out of
    # both training splits; the test images are not read (tuning).
    validation_images: int = 0

    def __post_init__(self):
        if not self.label_map_path:
            splits.check_fraction(self.labelled_fraction)
        if self.num_shards < 1:
            raise splits.SplitError(f"--num_shards {self.num_shards} must be >= 1")
        if self.validation_images < 0:
            raise splits.SplitError(
                f"--validation_images {self.validation_images} must be >= 0")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how the splits are made."""

    source: str = "fashion_mnist"
    data_path: str = ""
    splits: SplitOptions = SplitOptions()
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
