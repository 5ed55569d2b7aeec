"""build_splits: the three splits, their statistics, rejections and determinism."""

import glob
import gzip
import json
import os

import fake_imagenet
import pytest
import tensorflow as tf

from modules import features
from pipeline.components.example_gen import build, convert, sources, splits


def _read(uri, split):
    files = sorted(glob.glob(os.path.join(uri, f"Split-{split}", "*.gz")))
    examples = [tf.train.Example.FromString(r.numpy())
                for r in tf.data.TFRecordDataset(files, "GZIP")]
    return [(e.features.feature[features.FILENAME_KEY].bytes_list.value[0].decode(),
             e.features.feature[features.LABEL_KEY].int64_list.value[0]) for e in examples]


def _build(folder, out, **options):
    return build.build_splits(sources.ImageFolderSource(folder), str(out),
                              build.SplitOptions(num_shards=3, **options))


def test_splits_counts_and_stats(image_folder, tmp_path):
    stats = _build(image_folder, tmp_path / "out", labelled_fraction=0.2, seed=1)
    labelled = _read(tmp_path / "out", "labelled")
    unlabelled = _read(tmp_path / "out", "unlabelled")
    assert len(labelled) == 8  # round(0.2 * 40 / 4) = 2 per class.
    assert sorted(label for _, label in labelled) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(unlabelled) == 40 and set(labelled) <= set(unlabelled)
    assert len(_read(tmp_path / "out", "eval")) == 12
    assert stats["splits"]["labelled"]["per_class"] == {f"class_{i}": 2 for i in range(4)}
    on_disk = json.loads((tmp_path / "out" / features.SPLIT_STATS_FILE).read_text())
    assert on_disk["splits"]["eval"]["count"] == 12
    assert on_disk["rejected"]["count"] == 0


def test_same_seed_gives_identical_bytes(image_folder, tmp_path):
    _build(image_folder, tmp_path / "a", labelled_fraction=0.2, seed=5)
    _build(image_folder, tmp_path / "b", labelled_fraction=0.2, seed=5)
    for path in glob.glob(str(tmp_path / "a" / "Split-*" / "*.gz")):
        twin = path.replace(str(tmp_path / "a"), str(tmp_path / "b"))
        with open(path, "rb") as f, open(twin, "rb") as g:
            assert f.read() == g.read(), path
    _build(image_folder, tmp_path / "c", labelled_fraction=0.2, seed=6)
    assert _read(tmp_path / "a", "labelled") != _read(tmp_path / "c", "labelled")


def test_shards_are_gzip_files_any_reader_opens(image_folder, tmp_path):
    # Stored (level-0) deflate blocks: still GZIP, as TFX's readers and `gzip` expect.
    _build(image_folder, tmp_path / "out", labelled_fraction=0.2)
    for split, count in (("labelled", 8), ("unlabelled", 40), ("eval", 12)):
        records = 0
        for path in glob.glob(str(tmp_path / "out" / f"Split-{split}" / "*.gz")):
            with gzip.open(path, "rb") as f:
                data = f.read()
            offset = 0
            while offset < len(data):  # TFRecord framing: length, its CRC, data, data CRC.
                length = int.from_bytes(data[offset:offset + 8], "little")
                tf.train.Example.FromString(data[offset + 12:offset + 12 + length])
                offset += 12 + length + 4
                records += 1
            assert offset == len(data), path
        assert records == count, split


def test_pass_2_reads_a_shard_as_tf_data_does_and_fails_on_damage(image_folder, tmp_path):
    # Pass 2 copies records with its own GZIP TFRecord reader (convert.shard_records).
    _build(image_folder, tmp_path / "out", labelled_fraction=0.2)
    shard = sorted(glob.glob(str(tmp_path / "out" / "Split-unlabelled" / "*.gz")))[0]
    expected = [r.numpy() for r in tf.data.TFRecordDataset(shard, "GZIP")]
    assert list(convert.shard_records(shard)) == expected and len(expected) > 1
    with gzip.open(shard, "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.gz"  # A valid GZIP stream that ends inside the last record.
    cut.write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(RuntimeError, match=f"record {len(expected) - 1} is cut"):
        list(convert.shard_records(str(cut)))
    length = int.from_bytes(data[:8], "little")
    for place, name in ((20 + length // 2, "data"), (2, "length")):
        damaged = tmp_path / f"damaged_{name}.gz"  # Framing intact, one byte flipped.
        damaged.write_bytes(gzip.compress(data[:place] + bytes([data[place] ^ 0xFF])
                                          + data[place + 1:]))
        with pytest.raises(RuntimeError, match="record 0 .*(checksum|header)"):
            list(convert.shard_records(str(damaged)))


def test_exclude_labelled(image_folder, tmp_path):
    _build(image_folder, tmp_path / "out", labelled_fraction=0.2, exclude_labelled=True)
    labelled = set(_read(tmp_path / "out", "labelled"))
    unlabelled = set(_read(tmp_path / "out", "unlabelled"))
    assert len(unlabelled) == 32 and not labelled & unlabelled


def test_validation_hold_out_replaces_the_test_set(image_folder, tmp_path):
    """--validation_images: eval = class-balanced training images in neither training split;
    the labelled count stays the fraction of all training images; the test images are not
    read (a broken test image would be rejected if they were)."""
    bad_test = os.path.join(image_folder, "test", "class_0", "zz_broken.png")
    with open(bad_test, "wb") as f:
        f.write(b"not an image")
    stats = _build(image_folder, tmp_path / "out", labelled_fraction=0.2, seed=1,
                   validation_images=8)
    labelled = set(_read(tmp_path / "out", "labelled"))
    unlabelled = set(_read(tmp_path / "out", "unlabelled"))
    held = _read(tmp_path / "out", "eval")
    assert len(held) == 8 and sorted(label for _, label in held) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert not set(held) & (labelled | unlabelled)
    assert len(labelled) == 8 and len(unlabelled) == 32 and labelled <= unlabelled
    assert stats["selection"]["eval_from"] == "validation_hold_out"
    assert stats["rejected"]["count"] == 0
    # Another seed holds out other images; the same seed the same ones.
    again = _build(image_folder, tmp_path / "again", labelled_fraction=0.2, seed=1,
                   validation_images=8)
    assert _read(tmp_path / "again", "eval") == held and again["splits"] == stats["splits"]
    _build(image_folder, tmp_path / "other", labelled_fraction=0.2, seed=2,
           validation_images=8)
    assert set(_read(tmp_path / "other", "eval")) != set(held)
    with pytest.raises(splits.SplitError, match="validation_images=2"):
        _build(image_folder, tmp_path / "few", validation_images=2)  # < 1 per class


def test_bad_records_are_counted_named_and_skipped(image_folder, tmp_path):
    bad = os.path.join(image_folder, "train", "class_1", "zz_corrupt.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 truncated jpeg")
    stats = _build(image_folder, tmp_path / "out", labelled_fraction=0.2)
    assert stats["rejected"]["count"] == 1
    assert "zz_corrupt.jpg" in stats["rejected"]["records"][0]["error"]
    assert len(_read(tmp_path / "out", "unlabelled")) == 40


def test_label_map_selects_exactly_the_named_images(image_folder, tmp_path):
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"values": ["train_0_1.jpg", "train_3_4.png", "zz.JPEG"]}))
    stats = _build(image_folder, tmp_path / "out", label_map_path=str(label_map))
    assert sorted(_read(tmp_path / "out", "labelled")) == [("train_0_1.jpg", 0),
                                                           ("train_3_4.png", 3)]
    assert stats["selection"]["label_map_names_not_found"] == 1


def test_label_map_of_another_data_set_is_an_error(image_folder, tmp_path):
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"values": ["n01440764_2102.JPEG"]}))
    with pytest.raises(splits.SplitError, match="names no image"):
        _build(image_folder, tmp_path / "out", label_map_path=str(label_map))


def test_every_record_rejected_gives_a_clear_error(tmp_path):
    for part in ("train", "test"):
        folder = tmp_path / "imgs" / part / "c0"
        folder.mkdir(parents=True)
        (folder / "x.png").write_bytes(b"not a png")
    with pytest.raises(splits.SplitError, match="labelled split is empty"):
        _build(str(tmp_path / "imgs"), tmp_path / "out", labelled_fraction=0.5)


def test_fraction_out_of_range_fails_before_reading(image_folder, tmp_path):
    with pytest.raises(splits.SplitError, match=r"\(0, 1\]"):
        _build(image_folder, tmp_path / "out", labelled_fraction=0.0)
    assert not (tmp_path / "out").exists()


def test_name_shape():
    assert splits.name_shape("n01440764_10026.JPEG") == "a0_0.a"
    assert splits.name_shape("train_00001.png") == "a_0.a"


@pytest.mark.skipif(not all(map(os.path.isfile, (fake_imagenet.TEN_PERCENT,
                                                  fake_imagenet.ONE_PERCENT))),
                    reason="needs ../shared/data/imagenet_subsets")
def test_imagenet_label_map_of_another_data_set_fails_before_conversion(tmp_path,
                                                                         monkeypatch):
    fake = fake_imagenet.write(str(tmp_path / "imagenet"))
    source = sources.SlimTFRecordSource(fake.root)
    assert source.train_names() is None  # only a full pass would tell every name
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"values": ["train_00001.png", "train_00002.png"]}))
    converted = []
    monkeypatch.setattr(build.convert, "convert_unit",
                        lambda *args, **kwargs: converted.append(args))
    with pytest.raises(splits.SplitError,
                       match=r"named like \['n0.*_\d+\.JPEG'.*belong to this data set"):
        build.build_splits(source, str(tmp_path / "out"),
                           build.SplitOptions(label_map_path=str(label_map)))
    assert converted == []  # failed before reading the training data
    # The paper's own map has the source's name shape: no early error.
    splits.check_label_map_looks_like(fake_imagenet.ONE_PERCENT,
                                      splits.load_label_map(fake_imagenet.ONE_PERCENT),
                                      source.sample_train_names())
