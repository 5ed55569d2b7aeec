"""Which training images are labelled: a seeded class-balanced sample, or an S4L label map.

The sample is defined by hashing (seed, filename, position) and keeping, per class, the images
with the smallest hashes. It needs one number per training image, not the images, and the same
seed always gives the same subset, whatever machine or process runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import re
from collections import Counter
from collections.abc import Iterable


class SplitError(ValueError):
    """The labelled subset cannot be built as asked."""


def check_fraction(fraction: float) -> float:
    """Returns `fraction` if it is in (0, 1], else raises SplitError."""
    if not 0.0 < fraction <= 1.0:
        raise SplitError(f"labelled fraction must be in (0, 1], got {fraction}")
    return fraction


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """How S4LExampleGen chooses the labelled subset and writes the splits; the one home of
    these defaults (the command line takes them from here). Checked when built.

    Raises:
      SplitError: a fraction outside (0, 1] (without a label map), fewer than one
        shard, or a negative validation count.
    """

    labelled_fraction: float = 0.1
    label_map_path: str = ""
    seed: int = 0
    exclude_labelled: bool = False
    # Shards per split at least: one per work unit (sources.Unit).
    num_shards: int = 4
    # > 0: the eval split is this many training images (class-balanced, seeded), held out of
    # both training splits; the test images are not read (tuning).
    validation_images: int = 0

    def __post_init__(self):
        if not self.label_map_path:
            check_fraction(self.labelled_fraction)
        if self.num_shards < 1:
            raise SplitError(f"--num_shards {self.num_shards} must be >= 1")
        if self.validation_images < 0:
            raise SplitError(
                f"--validation_images {self.validation_images} must be >= 0")



def per_class_target(fraction: float, num_train: int, num_classes: int) -> int:
    """Images per class for a class-balanced subset of `fraction` of `num_train` images.

    Like the paper's subsets (128 per class for 10 % of ImageNet), every class gets the same
    count; at least one image per class.
    """
    check_fraction(fraction)
    return max(1, round(fraction * num_train / num_classes))


def sample_key(seed: int, filename: str, position: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{filename}\x00{position}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class BalancedSampler:
    """Streams (position, filename, label) and keeps the `per_class` smallest keys per class.

    `salt` gives an independent sample from the same seed (the validation hold-out).
    """

    def __init__(self, seed: int, salt: str = ""):
        self.seed = f"{salt}{seed}" if salt else seed
        self.class_counts: Counter = Counter()
        self._keys: list[tuple[int, int, int]] = []  # (key, position, label)

    def add(self, position: int, filename: str, label: int) -> None:
        self.class_counts[label] += 1
        self._keys.append((sample_key(self.seed, filename, position), position, label))

    def select(self, fraction: float, num_classes: int, num_train: int | None = None,
               exclude: set[int] | frozenset[int] = frozenset()) -> set[int]:
        """Returns the positions of the labelled images: per class, `fraction` of `num_train`
        (default: every added image) over the classes, never one of `exclude`."""
        total = num_train if num_train is not None else sum(self.class_counts.values())
        return self.select_per_class(per_class_target(fraction, total, num_classes), exclude)

    def select_per_class(self, target: int,
                         exclude: set[int] | frozenset[int] = frozenset()) -> set[int]:
        """The positions of the `target` smallest keys of each class, skipping `exclude`."""
        by_class: dict[int, list[tuple[int, int]]] = {}
        for key, position, label in self._keys:
            if position not in exclude:
                by_class.setdefault(label, []).append((key, position))
        chosen: set[int] = set()
        for items in by_class.values():
            chosen.update(position for _, position in heapq.nsmallest(target, items))
        return chosen


def load_label_map(path: str) -> set[str]:
    """Reads an S4L label-map file: one line of JSON, {"values": [<image file name>, ...]}."""
    if not os.path.isfile(path):
        raise SplitError(f"label-map file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        values = json.loads(text)["values"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise SplitError(
            f"label-map file {path!r} is not S4L's format {{\"values\": [file names]}}: {e}"
        ) from None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SplitError(f"label-map file {path!r}: 'values' must be a list of file names")
    names = set(values)
    if not names:
        raise SplitError(f"label-map file {path!r} lists no images")
    if len(names) != len(values):
        raise SplitError(
            f"label-map file {path!r} lists {len(values) - len(names)} file names twice"
        )
    return names


def check_label_map_matches(path: str, names: set[str], found: Iterable[str]) -> list[str]:
    """Raises if no listed image was found; returns the listed names that were not found."""
    missing = sorted(names - set(found))
    if len(missing) == len(names):
        raise SplitError(
            f"label-map file {path!r} names no image of the training data "
            f"(e.g. {missing[:3]}); does it belong to this data set?"
        )
    return missing


def name_shape(name: str) -> str:
    """A file name with each run of letters as "a" and of digits as "0":
    "n01440764_10026.JPEG" -> "a0_0.a", "train_00001.png" -> "a_0.a"."""
    return re.sub(r"[0-9]+", "0", re.sub(r"[A-Za-z]+", "a", name))


def check_label_map_looks_like(path: str, names: set[str], sample: list[str]) -> None:
    """Raises if no listed name has the shape of any sampled training file name: a label map
    of another data set then fails before the conversion, not after it (the exact check
    against every name still follows the conversion's first pass)."""
    if not sample:
        return
    shapes = {name_shape(name) for name in sample}
    if not any(name_shape(name) in shapes for name in names):
        raise SplitError(
            f"label-map file {path!r} names images like {sorted(names)[:2]}, but this "
            f"source's training images are named like {sorted(sample)[:2]} (the first "
            f"records of its first shards): does the map belong to this data set?")
