"""Already-split examples for the Importer: the layout check, what the data says about itself,
the fingerprint, and the pipeline node (no pipeline run here; see test_imagenet_e2e.py)."""

import os
import shutil

import pytest
import tensorflow as tf

from modules import features
from pipeline import cli
from pipeline.components import imported_examples
from pipeline.components.example_gen import build, sources
from pipeline.config import DataConfig
from pipeline.pipeline import examples_node


@pytest.fixture
def split_dir(image_folder, tmp_path):
    out = str(tmp_path / "splits")
    build.build_splits(sources.ImageFolderSource(image_folder), out,
                       build.SplitOptions(labelled_fraction=0.5, num_shards=2))
    return out


def test_example_gen_output_is_importable(split_dir):
    data = imported_examples.ImportedExamples(split_dir)
    assert data.class_names() == [f"class_{k}" for k in range(4)]
    assert data.converted_from() == "image_folder"
    assert data.labelled_fraction() == pytest.approx(0.5)
    assert all(len(files) == 2 for files in data.files.values())


def test_missing_split_is_named(split_dir):
    shutil.rmtree(os.path.join(split_dir, "Split-eval"))
    with pytest.raises(imported_examples.ImportedExamplesError, match=r"Split-eval/"):
        imported_examples.ImportedExamples(split_dir)


def test_without_split_stats_the_class_count_is_needed(split_dir):
    os.remove(os.path.join(split_dir, features.SPLIT_STATS_FILE))
    with pytest.raises(imported_examples.ImportedExamplesError, match="--num_classes"):
        imported_examples.ImportedExamples(split_dir)
    data = imported_examples.ImportedExamples(split_dir, num_classes=4)
    assert data.class_names() == [f"class_{k}" for k in range(4)]
    assert data.converted_from() is None and data.labelled_fraction() is None


def test_out_of_range_label_names_the_file(split_dir):
    # A 1-based label of the last class, as slim writes it, is one past the range.
    path = os.path.join(split_dir, "Split-labelled", "bad.tfrecord")
    for name in os.listdir(os.path.dirname(path)):
        os.remove(os.path.join(os.path.dirname(path), name))
    example = tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
        features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[4]))}))
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(example.SerializeToString())
    with pytest.raises(imported_examples.ImportedExamplesError,
                       match=r"bad.tfrecord record 0: label 4 outside \[0, 4\)"):
        imported_examples.ImportedExamples(split_dir)


def test_not_a_tfrecord_names_the_file(split_dir):
    unlabelled = os.path.join(split_dir, "Split-unlabelled")
    for name in os.listdir(unlabelled):
        os.remove(os.path.join(unlabelled, name))
    with open(os.path.join(unlabelled, "notes.txt"), "w") as f:
        f.write("not a record")
    with pytest.raises(imported_examples.ImportedExamplesError, match="notes.txt"):
        imported_examples.ImportedExamples(split_dir)


def test_fingerprint_changes_with_the_data(split_dir):
    first = imported_examples.ImportedExamples(split_dir).fingerprint()
    assert imported_examples.ImportedExamples(split_dir).fingerprint() == first
    eval_dir = os.path.join(split_dir, "Split-eval")
    path = os.path.join(eval_dir, sorted(os.listdir(eval_dir))[0])
    with open(path, "ab") as f:
        f.write(b"\0")
    assert imported_examples.ImportedExamples(split_dir).fingerprint() != first


def test_pipeline_node_is_an_importer_of_the_directory(split_dir):
    node, channel = examples_node(DataConfig(source="examples", data_path=split_dir,
                                             fingerprint="f"))
    assert channel is node.outputs["result"]
    assert node.id == imported_examples.IMPORTER_ID
    assert node.exec_properties["artifact_uri"] == split_dir
    assert node.exec_properties["reimport"] == 0


def test_cli_rejects_a_label_map_and_reads_the_variant(split_dir, tmp_path):
    args = cli.build_parser().parse_args(
        ["--source", "examples", "--data_path", split_dir, "--label_map", "/x"])
    with pytest.raises(ValueError, match="Split-labelled/ as it is"):
        cli.prepare(args)
    args = cli.build_parser().parse_args(
        ["--source", "examples", "--data_path", split_dir, "--preset", "supervised"])
    experiments, data = cli.prepare(args)
    assert experiments[0].dataset == "fashion_mnist" and experiments[0].num_classes == 4
    assert data.source == "examples" and data.fingerprint
    # A 50 % labelled split picks the 10 % variant; no --dataset needed (split_stats says).
    assert experiments[0].labels == "10pct"
