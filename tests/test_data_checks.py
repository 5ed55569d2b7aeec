"""ExampleValidator's anomalies on every record, and the gate that stops a run on wrong data
before training (`--stop_on_anomalies`)."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from conftest import REPO, write_image_folder
from modules import features
from pipeline.components import data_gate
from pipeline.components.example_gen import build, sources
from pipeline.config import DataConfig

pytestmark = pytest.mark.xdist_group("data_checks")


def _example(label: int, image: bool = True) -> bytes:
    feature = {features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
    if image:
        feature[features.IMAGE_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _append(split_dir: str, split: str, records: list[bytes]) -> None:
    # Past the first record of each split, which the Importer's own check reads.
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(os.path.join(split_dir, f"Split-{split}", "zz-extra.gz"),
                              options) as writer:
        for record in records:
            writer.write(record)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    images = write_image_folder(str(tmp / "images"))  # 4 classes
    split_dir = str(tmp / "splits")
    build.build_splits(sources.ImageFolderSource(images), split_dir,
                       build.SplitOptions(labelled_fraction=0.5, num_shards=2))
    _append(split_dir, "eval", [_example(7)])  # label out of range
    _append(split_dir, "unlabelled", [_example(1, image=False)])  # no image
    out = str(tmp / "out")
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "beam_runner.py"), "--source", "examples",
         "--data_path", split_dir, "--output_dir", out],
        capture_output=True, text=True, timeout=600)
    return run, out


def test_wrong_data_stops_the_run_before_training(stopped_run):
    run, out = stopped_run
    assert run.returncode == 1, run.stderr[-3000:]
    assert "beam_runner: stopped before training" in run.stderr
    assert ("split eval, image/class/label: labels from 0 to 7, outside [0, 4) for 4 classes"
            in run.stderr)
    assert "split unlabelled, image/encoded: Column dropped" in run.stderr
    assert not os.path.exists(os.path.join(out, "tfx", "Trainer.supervised"))
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert "stopped before training" not in summary["stopped"]  # the reason itself
    assert "image/class/label" in summary["stopped"]
    wrong = {(a["split"], a["feature"]) for a in summary["data_anomalies"] if a["wrong_data"]}
    assert wrong == {("eval", features.LABEL_KEY), ("unlabelled", features.IMAGE_KEY)}
    # The records without an image lack the other converter keys too: reported, not fatal.
    reported = {a["feature"] for a in summary["data_anomalies"] if not a["wrong_data"]}
    assert features.FILENAME_KEY in reported
    assert "data checks:   12 anomalies (2 wrong data)" in run.stdout
    with open(summary["report"], encoding="utf-8") as f:
        assert "Data anomalies (ExampleValidator)" in f.read()


def test_the_policy_decides_what_stops(stopped_run):
    _, out = stopped_run
    with open(os.path.join(out, "summary.json")) as f:
        found = json.load(f)["data_anomalies"]
    assert len(data_gate.blocking(found, "wrong_data")) == 2
    assert len(data_gate.blocking(found, "any")) == len(found) == 12
    assert data_gate.blocking(found, "never") == []
    with pytest.raises(ValueError, match="stop_on_anomalies='sometimes'"):
        data_gate.blocking(found, "sometimes")
    with pytest.raises(ValueError, match="expected one of wrong_data, any, never"):
        DataConfig(stop_on_anomalies="sometimes")
