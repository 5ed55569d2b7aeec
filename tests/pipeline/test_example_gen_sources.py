"""Readers of Fashion-MNIST IDX files, image folders and slim-built ImageNet TFRecords."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import write_idx
from pipeline.components.example_gen import sources


def test_fashion_mnist_idx_streams_png_records(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5])
    write_idx(str(tmp_path), "train", images, labels)
    write_idx(str(tmp_path), "t10k", images[:2], labels[:2])
    source = sources.FashionMnistSource(str(tmp_path))
    records = list(source.records("train"))
    assert [r.label for r in records] == [3, 1, 4, 1, 5]
    assert records[2].filename == "train_00002.png"
    decoded = np.array(Image.open(io.BytesIO(records[2].encoded)))
    np.testing.assert_array_equal(decoded, images[2])  # PNG is lossless.
    assert len(list(source.records("test"))) == 2
    assert source.class_names()[9] == "ankle_boot"


def test_fashion_mnist_count_mismatch_is_an_error(tmp_path):
    write_idx(str(tmp_path), "train", np.zeros((3, 28, 28)), np.zeros(2))
    write_idx(str(tmp_path), "t10k", np.zeros((1, 28, 28)), np.zeros(1))
    with pytest.raises(sources.SourceError, match="3 images but .* 2 labels"):
        list(sources.FashionMnistSource(str(tmp_path)).records("train"))


def test_fashion_mnist_missing_files_named(tmp_path):
    with pytest.raises(sources.SourceError, match="train-images-idx3-ubyte"):
        sources.FashionMnistSource(str(tmp_path))


def test_image_folder_classes_and_labels(image_folder):
    source = sources.ImageFolderSource(image_folder)
    assert source.class_names() == ["class_0", "class_1", "class_2", "class_3"]
    records = list(source.records("train"))
    assert len(records) == 40
    assert {r.label for r in records if r.filename.startswith("train_2_")} == {2}
    assert records[0].origin == os.path.join("train", "class_0", "train_0_0.png")


def test_image_folder_layout_errors(tmp_path):
    with pytest.raises(sources.SourceError, match="does not exist"):
        sources.ImageFolderSource(str(tmp_path / "nope"))
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "a" / "x.png")
    with pytest.raises(sources.SourceError, match="no 'test' sub-folder"):
        sources.ImageFolderSource(str(tmp_path))
    (tmp_path / "test" / "b").mkdir(parents=True)
    with pytest.raises(sources.SourceError, match="classes that train lacks"):
        sources.ImageFolderSource(str(tmp_path))
    (tmp_path / "test" / "b").rmdir()
    (tmp_path / "test" / "a").mkdir()
    sources.ImageFolderSource(str(tmp_path))  # a valid layout
    # An image dropped directly into train/ has no class: an error naming it, not a skip.
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "loose.png")
    (tmp_path / "train" / ".DS_Store").write_bytes(b"x")  # hidden: ignored by rule
    with pytest.raises(sources.SourceError, match=r"outside the class folders.*loose\.png"):
        sources.ImageFolderSource(str(tmp_path))


def _slim_example(label, filename, encoded=b"jpeg-bytes"):
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename])),
    })).SerializeToString()


def test_slim_tfrecords_labels_become_zero_based(tmp_path):
    with tf.io.TFRecordWriter(str(tmp_path / "train-00000-of-00001")) as w:
        w.write(_slim_example(1, b"n01440764_1.JPEG"))
        w.write(_slim_example(1000, b"n15075141_9.JPEG"))
    with tf.io.TFRecordWriter(str(tmp_path / "validation-00000-of-00001")) as w:
        w.write(_slim_example(5, b"ILSVRC2012_val_00000001.JPEG"))
    source = sources.SlimTFRecordSource(str(tmp_path))
    train = list(source.records("train"))
    assert [(r.label, r.filename) for r in train] == [(0, "n01440764_1.JPEG"),
                                                      (999, "n15075141_9.JPEG")]
    assert train[1].origin == "train-00000-of-00001 record 1"
    assert [r.label for r in source.records("test")] == [4]


def test_slim_tfrecords_t2t_names_and_missing_shards(tmp_path):
    with pytest.raises(sources.SourceError, match="no train shards"):
        sources.SlimTFRecordSource(str(tmp_path))
    for name in ("image_imagenet-train-00000-of-01024", "image_imagenet-dev-00000-of-00128"):
        with tf.io.TFRecordWriter(str(tmp_path / name)) as w:
            w.write(_slim_example(7, b"x.JPEG"))
    assert [r.label for r in sources.SlimTFRecordSource(str(tmp_path)).records("test")] == [6]


def test_unknown_source():
    with pytest.raises(sources.SourceError, match="unknown data source"):
        sources.make_source("csv", "/tmp")


def test_fingerprint_sees_a_file_replaced_in_the_same_second_at_the_same_size(tmp_path):
    from conftest import write_image_folder

    root = write_image_folder(str(tmp_path / "images"), classes=2, train_per_class=2,
                              test_per_class=1)
    source = sources.ImageFolderSource(root)
    first = source.fingerprint()
    path = os.path.join(root, "train", "class_0", "train_0_0.png")
    stat = os.stat(path)
    with open(path, "r+b") as f:  # same size, other bytes
        data = bytearray(f.read())
        data[-20] ^= 0xFF
        f.seek(0)
        f.write(bytes(data))
    # The same whole second as before, a few nanoseconds later.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    assert os.stat(path).st_size == stat.st_size
    assert int(os.stat(path).st_mtime) == int(stat.st_mtime)
    assert sources.ImageFolderSource(root).fingerprint() != first
