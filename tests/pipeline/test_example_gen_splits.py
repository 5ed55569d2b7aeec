"""Labelled-subset selection: class balance, determinism, S4L label-map files."""

import json
import os
from collections import Counter

import pytest

from conftest import SHARED_SUBSETS
from pipeline.components.example_gen import splits


def _sample(seed, fraction=0.1, per_class=(100, 100, 100, 40)):
    sampler = splits.BalancedSampler(seed)
    labels = [label for label, n in enumerate(per_class) for _ in range(n)]
    for position, label in enumerate(labels):
        sampler.add(position, f"img_{position}.png", label)
    chosen = sampler.select(fraction, len(per_class))
    return chosen, labels


def test_sample_is_class_balanced():
    chosen, labels = _sample(seed=0)
    counts = Counter(labels[p] for p in chosen)
    # round(0.1 * 340 / 4) = 8 per class.
    assert counts == {0: 8, 1: 8, 2: 8, 3: 8}


def test_small_class_gives_all_it_has():
    chosen, labels = _sample(seed=0, fraction=0.5, per_class=(100, 100, 100, 10))
    counts = Counter(labels[p] for p in chosen)
    assert counts[3] == 10 and counts[0] == round(0.5 * 310 / 4)


def test_same_seed_same_subset_other_seed_other_subset():
    assert _sample(seed=3)[0] == _sample(seed=3)[0]
    assert _sample(seed=3)[0] != _sample(seed=4)[0]


def test_sample_does_not_depend_on_insertion_order():
    forward = splits.BalancedSampler(1)
    backward = splits.BalancedSampler(1)
    items = [(p, f"f{p}", p % 3) for p in range(90)]
    for item in items:
        forward.add(*item)
    for item in reversed(items):
        backward.add(*item)
    assert forward.select(0.2, 3) == backward.select(0.2, 3)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01, 2])
def test_fraction_outside_unit_interval(fraction):
    with pytest.raises(splits.SplitError, match=r"must be in \(0, 1\]"):
        splits.check_fraction(fraction)


def test_fraction_one_is_allowed():
    chosen, labels = _sample(seed=0, fraction=1.0, per_class=(5, 5))
    assert len(chosen) == 10


@pytest.mark.parametrize("name,count,per_class", [
    ("label_map_count_128000_index_0", 128_000, 128),
    ("label_map_count_13000_index_0", 13_000, 13),
])
def test_real_s4l_label_maps(name, count, per_class):
    path = os.path.join(SHARED_SUBSETS, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (shared/ is beside the repository in CI)")
    names = splits.load_label_map(path)
    assert len(names) == count
    synsets = Counter(n.split("_")[0] for n in names)
    assert len(synsets) == 1000
    assert set(synsets.values()) == {per_class}


def test_real_label_maps_are_not_nested():
    paths = [os.path.join(SHARED_SUBSETS, f"label_map_count_{n}_index_0")
             for n in (128000, 13000)]
    if not all(os.path.exists(p) for p in paths):
        pytest.skip("shared label maps not present")
    ten, one = (splits.load_label_map(p) for p in paths)
    assert len(ten & one) == 1286  # docs/original_s4l.md §1.3.


def test_label_map_format_errors(tmp_path):
    with pytest.raises(splits.SplitError, match="does not exist"):
        splits.load_label_map(str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_text("n01_1.JPEG\nn01_2.JPEG\n")
    with pytest.raises(splits.SplitError, match="not S4L's format"):
        splits.load_label_map(str(bad))
    empty = tmp_path / "empty"
    empty.write_text(json.dumps({"values": []}))
    with pytest.raises(splits.SplitError, match="lists no images"):
        splits.load_label_map(str(empty))
    twice = tmp_path / "twice"
    twice.write_text(json.dumps({"values": ["a.JPEG", "a.JPEG"]}))
    with pytest.raises(splits.SplitError, match="1 file names twice"):
        splits.load_label_map(str(twice))


def test_label_map_matching_nothing_is_an_error():
    with pytest.raises(splits.SplitError, match="names no image of the training data"):
        splits.check_label_map_matches("map", {"x.JPEG"}, ["a.png", "b.png"])
    assert splits.check_label_map_matches("map", {"a.png", "x.JPEG"}, ["a.png"]) == ["x.JPEG"]
