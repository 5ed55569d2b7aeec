"""Validation and canonical conversion of single records."""


import pytest
import tensorflow as tf
from PIL import Image

from conftest import class_image, encode
from modules import features
from pipeline.components.example_gen import records
from pipeline.components.example_gen.sources import RawRecord

CLASSES = ["a", "b", "c"]


def _convert(encoded, label=1, filename="f.png"):
    return records.to_example(RawRecord(encoded, label, filename, "test-shard record 7"), 3,
                              CLASSES)


def _feature(example, key):
    value = example.features.feature[key]
    return (value.bytes_list.value or value.int64_list.value)[0]


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGB"), ("PNG", "L"), ("JPEG", "RGB"),
                                      ("JPEG", "L")])
def test_jpeg_and_png_are_kept_byte_for_byte(fmt, mode):
    encoded = encode(class_image(1, 0, mode=mode), fmt)
    example = _convert(encoded)
    assert _feature(example, features.IMAGE_KEY) == encoded
    assert _feature(example, features.FORMAT_KEY) == fmt.encode()
    assert _feature(example, features.LABEL_KEY) == 1
    assert _feature(example, features.CLASS_TEXT_KEY) == b"b"
    assert (_feature(example, features.HEIGHT_KEY), _feature(example, features.WIDTH_KEY)) == (
        20, 24)


@pytest.mark.parametrize("fmt,mode", [("GIF", "P"), ("BMP", "RGB"), ("PNG", "RGBA"),
                                      ("JPEG", "CMYK")])
def test_unusual_images_become_rgb_png(fmt, mode):
    image = class_image(2, 1)
    encoded = encode(image.convert(mode), fmt)
    example = _convert(encoded)
    converted = _feature(example, features.IMAGE_KEY)
    assert _feature(example, features.FORMAT_KEY) == b"PNG"
    decoded = tf.io.decode_png(converted).numpy()
    assert decoded.shape == (20, 24, 3)


def test_truncated_image_is_rejected_naming_the_record():
    encoded = encode(class_image(0, 0), "JPEG")
    with pytest.raises(records.RecordError, match=r"test-shard record 7 \(f.png\): not a decod"):
        _convert(encoded[: len(encoded) // 2])


def test_bytes_that_are_no_image_are_rejected():
    with pytest.raises(records.RecordError, match="not a decodable image"):
        _convert(b"definitely not an image")


@pytest.mark.parametrize("label,message", [(None, "missing label"), (-1, "label -1 outside"),
                                           (3, "label 3 outside")])
def test_bad_labels_are_rejected(label, message):
    with pytest.raises(records.RecordError, match=message):
        _convert(encode(class_image(0, 0), "PNG"), label=label)


def test_missing_image_is_rejected():
    with pytest.raises(records.RecordError, match="missing or empty image/encoded"):
        _convert(None)


def test_huge_image_is_rejected(monkeypatch):
    monkeypatch.setattr(records, "MAX_PIXELS", 100)
    with pytest.raises(records.RecordError, match="exceeds 100 pixels"):
        _convert(encode(Image.new("RGB", (11, 10)), "PNG"))
