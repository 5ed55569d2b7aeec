"""Validation and canonical conversion of single records."""


import io
import struct
import zlib

import numpy as np
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


def _png_16_bit_rgb(values: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one): values uint16 [H, W, 3]."""
    height, width, _ = values.shape
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


# A full-range ramp, 0 .. 65535: scaled to 8 bits its mean is 127.5; clipped it is ~251.
RAMP_16 = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16)[None, :], (8, 1))


def test_16_bit_grayscale_png_is_scaled_not_clipped():
    buffer = io.BytesIO()
    Image.fromarray(RAMP_16, "I;16").save(buffer, format="PNG")
    example = _convert(buffer.getvalue())
    decoded = tf.io.decode_png(_feature(example, features.IMAGE_KEY), channels=3).numpy()
    assert decoded.shape == (8, 64, 3)
    assert decoded.mean() == pytest.approx(127.5, abs=1.0)
    assert decoded.min() == 0 and decoded.max() == 255


def test_16_bit_rgb_png_is_scaled_not_clipped():
    example = _convert(_png_16_bit_rgb(np.stack([RAMP_16] * 3, axis=-1)))
    decoded = tf.io.decode_image(_feature(example, features.IMAGE_KEY), channels=3).numpy()
    assert decoded.dtype == np.uint8 and decoded.shape == (8, 64, 3)
    assert decoded.mean() == pytest.approx(127.5, abs=1.0)


def test_float_image_in_0_1_is_scaled():
    values = np.tile(np.linspace(0, 1, 32, dtype=np.float32)[None, :], (8, 1))
    buffer = io.BytesIO()
    Image.fromarray(values, "F").save(buffer, format="TIFF")
    decoded = tf.io.decode_png(_feature(_convert(buffer.getvalue()), features.IMAGE_KEY)).numpy()
    assert decoded.mean() == pytest.approx(127.5, abs=1.0)


@pytest.mark.parametrize("size,message", [((200_000, 1), "has a side over 30000 pixels"),
                                          ((2_000, 50), "has an aspect ratio over 20:1"),
                                          ((60, 2), "has an aspect ratio over 20:1")])
def test_extreme_shapes_are_rejected_with_the_limit(size, message):
    with pytest.raises(records.RecordError, match=rf"f.png\): image of {size[0]}x{size[1]} "
                                                  f"{message}"):
        _convert(encode(Image.new("L", size), "PNG"))
    assert _convert(encode(Image.new("L", (40, 2)), "PNG"))  # 20:1 is accepted


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_kept_jpeg_is_checked_to_its_last_byte_and_keeps_its_size(mode):
    # Kept JPEGs decode at 1/8 scale (pixels unused); that decode still reads every byte.
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    encoded = encode(Image.fromarray(pixels).convert(mode), "JPEG")
    example = _convert(encoded)
    assert _feature(example, features.IMAGE_KEY) == encoded
    assert (_feature(example, features.HEIGHT_KEY), _feature(example, features.WIDTH_KEY)) == (
        375, 500)
    for end in (len(encoded) // 2, int(len(encoded) * 0.95), len(encoded) - 600):
        with pytest.raises(records.RecordError, match="not a decodable image"):
            _convert(encoded[:end])
