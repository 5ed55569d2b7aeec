"""S4LExampleGen's Beam passes: the same files whatever runs the units, and units that cover
each source in order."""

import glob
import json
import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from conftest import write_idx, write_image_folder
from pipeline.components.example_gen import build, sources

pytestmark = pytest.mark.xdist_group("beam_modes")


def _files(root) -> dict[str, bytes]:
    found = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def _pipeline(*args):
    return lambda: beam.Pipeline(options=PipelineOptions(list(args)))


def test_every_runner_writes_the_same_bytes(tmp_path):
    """A loop, Beam in this process and Beam in 2 worker processes give byte-identical
    splits and statistics, with a bad record in the data and 5 units per part."""
    root = write_image_folder(str(tmp_path / "images"), classes=3, train_per_class=7,
                              test_per_class=2)
    with open(os.path.join(root, "train", "class_1", "broken.png"), "wb") as f:
        f.write(b"not an image")
    options = build.SplitOptions(labelled_fraction=0.3, seed=3, num_shards=5,
                                 exclude_labelled=True)
    runs = {
        "loop": None,
        "in_memory": _pipeline("--direct_running_mode=in_memory", "--direct_num_workers=1"),
        "two_processes": _pipeline("--direct_running_mode=multi_processing",
                                   "--direct_num_workers=2"),
    }
    outputs, stats = {}, {}
    for name, make_pipeline in runs.items():
        out = str(tmp_path / name)
        stats[name] = build.build_splits(sources.ImageFolderSource(root), out, options,
                                         make_pipeline=make_pipeline)
        outputs[name] = _files(out)
    assert stats["loop"]["rejected"]["count"] == 1
    assert "broken.png" in stats["loop"]["rejected"]["records"][0]["error"]
    assert stats["loop"]["units"] == {"train": 5, "test": 5}
    assert sorted(outputs["loop"]) == sorted(
        [f"Split-{split}/data_tfrecord-{i:05d}-of-00005.gz"
         for split in ("labelled", "unlabelled", "eval") for i in range(5)]
        + ["split_stats.json"])  # The unit summaries are gone.
    for name in runs:  # The timing of the conversion is the one thing that differs.
        assert stats[name].pop("conversion")["seconds"] > 0
        outputs[name]["split_stats.json"] = json.dumps(stats[name])
    for name in ("in_memory", "two_processes"):
        assert stats[name] == stats["loop"], name
        assert outputs[name] == outputs["loop"], name


@pytest.mark.parametrize("min_units", [1, 3, 7])
def test_units_cover_a_folder_in_order(tmp_path, min_units):
    root = write_image_folder(str(tmp_path / "images"), classes=2, train_per_class=3,
                              test_per_class=1)
    source = sources.ImageFolderSource(root)
    units = source.units("train", min_units)
    assert len(units) == max(min_units, 1)
    assert [u.index for u in units] == list(range(len(units)))
    in_units = [r for u in units for r in source.unit_records(u)]
    assert [r.ordinal for r in in_units] == list(range(6))
    assert [r.filename for r in in_units] == [r.filename for r in source.records("train")]


def test_fashion_mnist_units_read_their_range(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (11, 28, 28), dtype=np.uint8)
    write_idx(str(tmp_path), "train", images, np.arange(11) % 10)
    write_idx(str(tmp_path), "t10k", images[:3], np.arange(3))
    monkeypatch.setattr(sources, "MAX_RECORDS_PER_UNIT", 4)
    source = sources.FashionMnistSource(str(tmp_path))
    units = source.units("train", 2)
    assert [u.span for u in units] == [(0, 3), (3, 7), (7, 11)]  # at most 4 records each
    records = [r for u in units for r in source.unit_records(u)]
    whole = list(source.records("train"))
    assert [r.ordinal for r in records] == list(range(11))
    assert [(r.encoded, r.label) for r in records] == [(r.encoded, r.label) for r in whole]
