"""A corpus of bad and unusual inputs: unusual but valid images are converted correctly, the
rest are rejected with the file and record named, counted, and the remaining data processed."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import class_image, encode
from modules import features
from modules.transform import image_ops
from pipeline.components.example_gen import build, sources

VALID_UNUSUAL = {
    "png_named_jpg.jpg": lambda: encode(class_image(0, 1), "PNG"),
    "gif_named_jpg.jpg": lambda: encode(class_image(0, 2).convert("P"), "GIF"),
    "bitmap.bmp": lambda: encode(class_image(0, 3), "BMP"),
    "cmyk.jpg": lambda: encode(class_image(0, 4).convert("CMYK"), "JPEG"),
    "gray.jpg": lambda: encode(class_image(0, 5, mode="L"), "JPEG"),
    "rgba.png": lambda: encode(class_image(0, 6).convert("RGBA"), "PNG"),
    "one_pixel.png": lambda: encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
    "large.jpg": lambda: encode(Image.new("RGB", (4000, 3000), (90, 90, 90)), "JPEG"),
}
INVALID = {
    "truncated.jpg": lambda: encode(class_image(1, 1), "JPEG")[:300],
    "not_an_image.jpg": lambda: b"this is a text file, not a JPEG",
    "empty.png": lambda: b"",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for part in ("train", "test"):
        for label in range(2):
            folder = root / part / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(4):
                class_image(label, i).save(folder / f"ok_{part}_{label}_{i}.png")
    for name, make in {**VALID_UNUSUAL, **INVALID}.items():
        (root / "train" / "c0" / name).write_bytes(make())
    # The same file name in two classes.
    class_image(1, 9).save(root / "train" / "c1" / "gray.jpg")
    out = root / "out"
    stats = build.build_splits(sources.ImageFolderSource(str(root)), str(out),
                               build.SplitOptions(labelled_fraction=1.0, num_shards=2))
    return stats, out


def _examples(out, split):
    files = sorted(glob.glob(os.path.join(out, f"Split-{split}", "*.gz")))
    return {e.features.feature[features.FILENAME_KEY].bytes_list.value[0].decode(): e
            for e in (tf.train.Example.FromString(r.numpy())
                      for r in tf.data.TFRecordDataset(files, "GZIP"))}


def test_invalid_files_are_rejected_named_and_counted(corpus):
    stats, _ = corpus
    assert stats["rejected"]["count"] == len(INVALID)
    messages = " ".join(r["error"] for r in stats["rejected"]["records"])
    for name in INVALID:
        assert os.path.join("train", "c0", name) in messages


def test_valid_unusual_images_are_converted_and_decode(corpus):
    stats, out = corpus
    examples = _examples(out, "unlabelled")
    # 8 normal + 8 unusual + the duplicated name (both copies kept, one dict key).
    assert stats["splits"]["unlabelled"]["count"] == 8 + len(VALID_UNUSUAL) + 1
    for name in VALID_UNUSUAL:
        encoded = examples[name].features.feature[features.IMAGE_KEY].bytes_list.value[0]
        image = image_ops.decode(tf.constant(encoded)).numpy()
        assert image.ndim == 3 and image.shape[2] == 3, name
        processed = image_ops.eval_preprocess(tf.constant(encoded), 36, 32).numpy()
        assert processed.shape == (32, 32, 3) and np.isfinite(processed).all(), name
    red = image_ops.decode(tf.constant(examples["one_pixel.png"].features.feature[
        features.IMAGE_KEY].bytes_list.value[0])).numpy()
    assert tuple(red[0, 0]) == (200, 10, 10)
    height = examples["large.jpg"].features.feature[features.HEIGHT_KEY].int64_list.value[0]
    assert height == 3000


def test_duplicate_file_names_are_reported(corpus):
    stats, _ = corpus
    assert stats["duplicate_filenames"] == {"count": 1, "examples": ["gray.jpg"]}


def _slim(label=None, encoded=None, filename=b"x.JPEG"):
    feature = {"image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[filename]))}
    if label is not None:
        feature["image/class/label"] = tf.train.Feature(int64_list=tf.train.Int64List(
            value=[label]))
    if encoded is not None:
        feature["image/encoded"] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[encoded]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_bad_tfrecords(tmp_path):
    jpeg = encode(class_image(1, 1), "JPEG")
    with tf.io.TFRecordWriter(str(tmp_path / "train-00000-of-00003")) as w:
        w.write(_slim(1, jpeg, b"good_1.JPEG"))
        w.write(_slim(2, None, b"no_image.JPEG"))
        w.write(_slim(0, jpeg, b"label_minus_one.JPEG"))  # 1-based 0 -> -1
        w.write(_slim(4, jpeg, b"label_too_big.JPEG"))  # 1-based 4 -> 3 = num_classes
        w.write(_slim(None, jpeg, b"no_label.JPEG"))
        w.write(b"\x00\x01 not a protobuf")
    with tf.io.TFRecordWriter(str(tmp_path / "train-00001-of-00003")):
        pass  # An empty shard.
    with tf.io.TFRecordWriter(str(tmp_path / "train-00002-of-00003")) as w:
        w.write(_slim(3, jpeg, b"good_2.JPEG"))
    with tf.io.TFRecordWriter(str(tmp_path / "validation-00000-of-00001")) as w:
        w.write(_slim(2, jpeg, b"val_1.JPEG"))
    stats = build.build_splits(
        sources.SlimTFRecordSource(str(tmp_path), num_classes=3), str(tmp_path / "out"),
        build.SplitOptions(labelled_fraction=1.0, num_shards=1))
    assert stats["splits"]["unlabelled"]["count"] == 2
    assert stats["splits"]["eval"]["count"] == 1
    assert stats["rejected"]["count"] == 5
    errors = [r["error"] for r in stats["rejected"]["records"]]
    assert any("train-00000-of-00003 record 1 (no_image.JPEG): missing" in e for e in errors)
    assert any("record 2 (label_minus_one.JPEG): label -1 outside [0, 3)" in e for e in errors)
    assert any("record 3 (label_too_big.JPEG): label 3 outside" in e for e in errors)
    assert any("record 4 (no_label.JPEG): missing label" in e for e in errors)
    assert any("record 5" in e for e in errors)


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory):
    """An image folder as real disks hold them: hidden and system folders, dot-files,
    formats outside the usual extensions, and entries that are no readable file."""
    root = tmp_path_factory.mktemp("messy")
    for part in ("train", "test"):
        for label in range(2):
            folder = root / part / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(3):
                class_image(label, i).save(folder / f"ok_{part}_{label}_{i}.png")
    train = root / "train"
    for hidden in (".ipynb_checkpoints", "__MACOSX", "lost+found", ".trash"):
        (train / hidden).mkdir()
        class_image(0, 50).save(train / hidden / "stray.png")
    (train / "c0" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "test" / "__MACOSX").mkdir()
    class_image(1, 60).save(train / "c1" / "photo.webp", format="WEBP")
    class_image(1, 61).save(train / "c1" / "scan.tiff", format="TIFF")
    (train / "c0" / "notes.txt").write_text("not an image")
    os.symlink(train / "c0" / "gone.png", train / "c0" / "broken_link.png")
    (train / "c0" / "folder.jpg").mkdir()
    os.mkfifo(train / "c0" / "pipe.png")
    (train / "c0" / os.fsdecode(b"bad_\xff_name.png")).write_bytes(encode(class_image(0, 7),
                                                                          "PNG"))
    return root


def test_messy_folder_ignores_hidden_entries_by_rule_and_rejects_the_rest_by_name(
        messy_folder, tmp_path):
    source = sources.ImageFolderSource(str(messy_folder))
    assert source.class_names() == ["c0", "c1"]  # no hidden or system folder is a class
    stats = build.build_splits(source, str(tmp_path / "out"),
                               build.SplitOptions(labelled_fraction=1.0, num_shards=1))
    ignored = stats["ignored_hidden"]["examples"]
    assert stats["ignored_hidden"]["count"] == 6
    assert {"train/.ipynb_checkpoints", "train/__MACOSX", "train/lost+found", "train/.trash",
            "train/c0/.DS_Store", "test/__MACOSX"} == set(ignored)
    # WebP and TIFF are images Pillow reads: converted, not skipped.
    assert {"photo.webp", "scan.tiff"} <= set(_examples(tmp_path / "out", "unlabelled"))
    errors = " | ".join(r["error"] for r in stats["rejected"]["records"])
    for expected in ("notes.txt): not a decodable image", "broken_link.png): broken symbolic link",
                     "folder.jpg): a folder, not an image file",
                     "pipe.png): not a regular file (a FIFO)",
                     "file name is not valid UTF-8"):
        assert expected in errors, expected
    assert stats["rejected"]["count"] == 5
    assert stats["splits"]["unlabelled"]["count"] == 8 and stats["splits"]["eval"]["count"] == 6


def test_unreadable_file_is_rejected_by_name(messy_folder, tmp_path, monkeypatch):
    # The tests run as root, which reads any file: deny this one the way the OS would.
    monkeypatch.setattr(sources.os, "access",
                        lambda path, mode: not str(path).endswith("ok_train_1_2.png"))
    stats = build.build_splits(sources.ImageFolderSource(str(messy_folder)),
                               str(tmp_path / "out"),
                               build.SplitOptions(labelled_fraction=1.0, num_shards=1))
    errors = [r["error"] for r in stats["rejected"]["records"]]
    assert any("ok_train_1_2.png): cannot be read (permission denied)" in e for e in errors)


def test_empty_class_folder_is_an_error(tmp_path):
    for part in ("train", "test"):
        (tmp_path / part / "c0").mkdir(parents=True)
        class_image(0, 1).save(tmp_path / part / "c0" / "a.png")
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "empty" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(sources.SourceError, match=r"class folders without images: \['empty'\]"):
        sources.ImageFolderSource(str(tmp_path))


def test_corrupt_shard_rejects_its_rest_and_keeps_the_other_shards(tmp_path):
    jpeg = encode(class_image(1, 1), "JPEG")
    good = str(tmp_path / "train-00000-of-00002")
    with tf.io.TFRecordWriter(good) as w:
        for i in range(3):
            w.write(_slim(1 + i % 2, jpeg, f"a_{i}.JPEG".encode()))
    with open(good, "rb") as f:
        data = f.read()
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF  # inside the second record: its checksum fails
    (tmp_path / "train-00001-of-00002").write_bytes(bytes(corrupt))
    with tf.io.TFRecordWriter(str(tmp_path / "validation-00000-of-00001")) as w:
        w.write(_slim(2, jpeg, b"val_1.JPEG"))
    stats = build.build_splits(
        sources.SlimTFRecordSource(str(tmp_path), num_classes=3), str(tmp_path / "out"),
        build.SplitOptions(labelled_fraction=1.0, num_shards=1))
    errors = [r["error"] for r in stats["rejected"]["records"]]
    assert stats["rejected"]["count"] == 1, errors
    assert "train-00001-of-00002 record 1 onwards" in errors[0]
    assert "corrupt TFRecord data, the rest of the shard is rejected" in errors[0]
    # The good shard in full, and the corrupt one's record before the damage.
    assert stats["splits"]["unlabelled"]["count"] == 4


def test_test_split_must_have_the_training_classes(tmp_path):
    for part, classes in (("train", ("a", "b")), ("test", ("a",))):
        for name in classes:
            (tmp_path / part / name).mkdir(parents=True)
            class_image(0, 1).save(tmp_path / part / name / "x.png")
    with pytest.raises(sources.SourceError, match=r"test has no folder for classes of train: "
                                                  r"\['b'\]"):
        sources.ImageFolderSource(str(tmp_path))


def test_label_map_of_another_data_set_fails_before_conversion(tmp_path, monkeypatch):
    from conftest import write_image_folder

    root = write_image_folder(str(tmp_path / "images"), classes=2, train_per_class=3,
                              test_per_class=1)
    label_map = tmp_path / "map.json"
    label_map.write_text('{"values": ["n01440764_10026.JPEG", "n01440764_10027.JPEG"]}')
    monkeypatch.setattr(build.convert, "convert_unit",
                        lambda *a, **k: pytest.fail("converted before the check"))
    with pytest.raises(ValueError, match="names no image of the training data"):
        build.build_splits(sources.ImageFolderSource(root), str(tmp_path / "out"),
                           build.SplitOptions(label_map_path=str(label_map)))
