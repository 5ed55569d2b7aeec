"""A tiny ImageNet in the layout of TF-slim's build_imagenet_data: `train-*-of-01024` and
`validation-*-of-00128` shards of tf.Examples with slim's keys and 1-based labels, whose
training file names come from the paper's real label-map files."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from conftest import SHARED_SUBSETS, encode
from pipeline.components.example_gen import splits

TEN_PERCENT = os.path.join(SHARED_SUBSETS, "label_map_count_128000_index_0")
ONE_PERCENT = os.path.join(SHARED_SUBSETS, "label_map_count_13000_index_0")
# Synsets (by their index among the 1,000 sorted ones) the fake set has images of.
CLASS_INDICES = (0, 1, 500, 999)


@dataclasses.dataclass
class FakeImageNet:
    root: str
    synsets: list[str]  # all 1,000, sorted: label = index + 1, as slim writes it
    train: list[tuple[str, int]]  # (file name, 0-based label)
    validation: list[tuple[str, int]]
    ten_percent: set[str]  # training file names in the 10 % map
    one_percent: set[str]


def _feature(value) -> tf.train.Feature:
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    if isinstance(value, list):
        return tf.train.Feature(float_list=tf.train.FloatList(value=value))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def slim_example(image: bytes, filename: str, label: int, synset: str, size: tuple[int, int]
                 ) -> bytes:
    """One record as slim's build_imagenet_data writes it (label 1-based, empty boxes)."""
    height, width = size
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _feature(image), "image/format": _feature(b"JPEG"),
        "image/colorspace": _feature(b"RGB"), "image/channels": _feature(3),
        "image/class/label": _feature(label + 1), "image/class/synset": _feature(synset.encode()),
        "image/class/text": _feature(f"synset {synset}".encode()),
        "image/filename": _feature(filename.encode()),
        "image/height": _feature(height), "image/width": _feature(width),
        **{f"image/object/bbox/{k}": _feature([]) for k in ("xmin", "ymin", "xmax", "ymax")},
    })).SerializeToString()


def _image(label: int, index: int) -> tuple[bytes, tuple[int, int]]:
    rng = np.random.default_rng(label * 7919 + index)
    size = (48 + 8 * (index % 3), 64)  # not square: resize_small + central crop matter
    array = rng.integers(0, 60, (*size, 3)).astype(np.uint8)
    array[:, (label % 4) * 16:(label % 4) * 16 + 16] += 150
    return encode(Image.fromarray(array), "JPEG"), size


def write(root: str, per_class: dict[str, int] | None = None) -> FakeImageNet:
    """Per class: `per_class["ten"]` names from the 10 % map, `["one"]` from the 1 % map (not
    in the 10 % one), `["other"]` in neither; `["validation"]` validation images."""
    counts = {"ten": 3, "one": 2, "other": 2, "validation": 2, **(per_class or {})}
    ten, one = splits.load_label_map(TEN_PERCENT), splits.load_label_map(ONE_PERCENT)
    synsets = sorted({name.split("_")[0] for name in ten})
    assert len(synsets) == 1000
    train, validation = [], []
    for k in CLASS_INDICES:
        synset = synsets[k]
        ten_names = sorted(n for n in ten if n.startswith(synset + "_"))[:counts["ten"]]
        one_names = sorted(n for n in one - ten if n.startswith(synset + "_"))[:counts["one"]]
        other = [f"{synset}_{9_000_000 + i}.JPEG" for i in range(counts["other"])]
        assert not set(other) & (ten | one)
        train += [(name, k) for name in ten_names + one_names + other]
        validation += [(f"ILSVRC2012_val_{k * 100 + i:08d}.JPEG", k)
                       for i in range(counts["validation"])]
    os.makedirs(root, exist_ok=True)
    shards = {"train-00000-of-01024": train[::2], "train-00001-of-01024": train[1::2],
              "validation-00000-of-00128": validation}
    for shard, records in shards.items():
        with tf.io.TFRecordWriter(os.path.join(root, shard)) as writer:
            for index, (name, label) in enumerate(records):
                image, size = _image(label, index)
                writer.write(slim_example(image, name, label, synsets[label], size))
    names = {name for name, _ in train}
    return FakeImageNet(root, synsets, train, validation, names & ten, names & one)
