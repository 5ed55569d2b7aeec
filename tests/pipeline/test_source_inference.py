"""`--source` and `--output_dir` read from `--data_path`: a user's folder needs no flag but
its path."""

import os

import numpy as np
import pytest

from conftest import write_idx
from pipeline import cli


def _source(*argv):
    return cli.build_parser().parse_args(list(argv)).source


def _idx_dir(root):
    images = np.zeros((2, 28, 28), np.uint8)
    for stem in ("train", "t10k"):
        write_idx(str(root), stem, images, np.zeros(2, np.uint8))
    return str(root)


def _shards(root):
    os.makedirs(root)
    for name in ("train-00000-of-00001", "validation-00000-of-00001"):
        open(os.path.join(root, name), "wb").close()
    return str(root)


def _examples(root):
    for split in ("labelled", "unlabelled", "eval"):
        os.makedirs(os.path.join(root, f"Split-{split}"))
    return str(root)


def test_no_path_or_a_remote_one_means_fashion_mnist():
    assert _source() == "fashion_mnist"
    assert _source("--data_path", "gs://bucket/fashion-mnist") == "fashion_mnist"


@pytest.mark.parametrize("make, expected", [
    (_idx_dir, "fashion_mnist"), (_shards, "imagenet_tfrecords"), (_examples, "examples")])
def test_each_layout_names_its_source(tmp_path, make, expected):
    assert _source("--data_path", make(tmp_path / "data")) == expected


def test_an_image_folder_alone_gets_the_small_image_recipe(image_folder):
    args = cli.build_parser().parse_args(["--data_path", image_folder])
    assert args.source == "image_folder"
    experiments, data = cli.prepare(args)
    assert data.source == "image_folder" and data.num_classes == 4
    # The small-image recipe (zero-padding, no inception crop) and the schedule rule's bounds.
    (supervised,) = experiments
    assert supervised.image_fit == "zero_pad" and supervised.min_steps > 0


def test_an_explicit_source_wins(image_folder):
    assert _source("--source", "image_folder", "--data_path", image_folder) == "image_folder"


def test_unknown_layout_is_refused_naming_the_path_and_the_layouts(tmp_path, capsys):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        _source("--data_path", str(tmp_path / "pictures"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'pictures'} has no layout --source knows" in err
    assert "DIR/train/<class>/<image>" in err


def test_a_missing_directory_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _source("--data_path", str(tmp_path / "nowhere"))
    assert "is not a directory" in capsys.readouterr().err


def test_a_directory_of_two_layouts_asks_for_source(tmp_path, capsys):
    root = _idx_dir(tmp_path / "data")
    for part in ("train", "test"):
        os.makedirs(os.path.join(root, part, "a"))
    with pytest.raises(SystemExit):
        _source("--data_path", root)
    assert "looks like several sources (fashion_mnist, image_folder)" in (
        capsys.readouterr().err)


def test_each_data_set_gets_its_own_output_directory(image_folder):
    def output_dir(*argv):
        return cli.build_parser().parse_args(list(argv)).output_dir

    # One output directory per data set: runs of other data would share ML Metadata and
    # gate each other's models against their blessed baselines.
    assert output_dir() == os.path.join("runs", "fashion_mnist")
    assert output_dir("--data_path", image_folder + "/") == os.path.join("runs", "images")
    assert output_dir("--data_path", "gs://bucket/flowers") == os.path.join("runs", "flowers")
    assert output_dir("--data_path", image_folder, "--output_dir", "out") == "out"
