"""Validation of raw records and their conversion to canonical tf.Examples.

A record is accepted when its label is in range and Pillow fully decodes its image. JPEG and
PNG files in grayscale or RGB are kept byte for byte; any other decodable image (GIF, BMP,
CMYK or RGBA JPEG/PNG, 16-bit PNG) is re-encoded as RGB PNG so that every later stage
(TF's decoders, Transform, serving) sees a format it handles the same way.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image

from modules import features
from pipeline.components.example_gen.sources import RawRecord

_KEEP_FORMATS = {"JPEG": "JPEG", "PNG": "PNG"}
_KEEP_MODES = {"L", "RGB"}
MAX_PIXELS = 100_000_000  # Guards against decompression bombs; ~10k x 10k.
MAX_SIDE = 30_000  # pixels, either side (a 200000x1 PNG is a few hundred bytes)
MAX_ASPECT = 20.0  # longer side / shorter side
# Pillow modes of more than 8 bits per value; convert("RGB") would clip them to 255.
_HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


class RecordError(ValueError):
    """A record that is rejected; the message names its origin and the problem."""


def to_example(record: RawRecord, num_classes: int, class_names: list[str]) -> tf.train.Example:
    """Validates `record` and returns its canonical tf.Example.

    Raises:
      RecordError: the label is missing or out of range, or the image does not decode.
    """
    if record.error:
        raise RecordError(f"{record.origin} ({record.filename}): {record.error}")
    if record.label is None:
        raise RecordError(f"{record.origin} ({record.filename}): missing label")
    if not 0 <= record.label < num_classes:
        raise RecordError(
            f"{record.origin} ({record.filename}): label {record.label} outside [0, {num_classes})"
        )
    if not record.encoded:
        raise RecordError(f"{record.origin} ({record.filename}): missing or empty image/encoded")
    encoded, image_format, height, width = _normalise_image(record)
    # Filled in place: half the Python time of building Feature messages and a dict, and
    # this runs under the GIL once per image (docs/benchmarks.md, `example_gen_throughput`).
    example = tf.train.Example()
    feature = example.features.feature
    feature[features.IMAGE_KEY].bytes_list.value.append(encoded)
    feature[features.FORMAT_KEY].bytes_list.value.append(image_format.encode())
    feature[features.LABEL_KEY].int64_list.value.append(record.label)
    feature[features.FILENAME_KEY].bytes_list.value.append(record.filename.encode())
    feature[features.CLASS_TEXT_KEY].bytes_list.value.append(class_names[record.label].encode())
    feature[features.HEIGHT_KEY].int64_list.value.append(height)
    feature[features.WIDTH_KEY].int64_list.value.append(width)
    return example


def _normalise_image(record: RawRecord) -> tuple[bytes, str, int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(record.encoded))
            image_format, width, height = image.format, image.width, image.height
            _check_shape(record, width, height)
            if image_format == "JPEG" and image.mode in _KEEP_MODES:
                # Kept as it is, so its pixels are not needed: libjpeg's DCT scaling to 1/8
                # still decodes every entropy-coded byte (truncated or corrupt data fails as
                # in a full decode) at a fraction of the cost (docs/benchmarks.md).
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()  # Decodes: catches truncated files that open() accepts.
    except RecordError:
        raise
    except Image.UnidentifiedImageError:
        raise RecordError(f"{record.origin} ({record.filename}): not a decodable image "
                          "(no image format Pillow knows)") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad data.
        raise RecordError(
            f"{record.origin} ({record.filename}): not a decodable image ({type(e).__name__}: {e})"
        ) from None
    if image_format in _KEEP_FORMATS and image.mode in _KEEP_MODES:
        return record.encoded, _KEEP_FORMATS[image_format], height, width
    if image.mode in _HIGH_DEPTH_MODES:
        image = _to_8_bit(image)
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue(), "PNG", image.height, image.width


def _check_shape(record: RawRecord, width: int, height: int) -> None:
    """Raises RecordError for images too large or too thin to be training images."""
    where = f"{record.origin} ({record.filename}): image of {width}x{height}"
    if width * height > MAX_PIXELS:
        raise RecordError(f"{where} exceeds {MAX_PIXELS} pixels")
    if max(width, height) > MAX_SIDE:
        raise RecordError(f"{where} has a side over {MAX_SIDE} pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise RecordError(f"{where} has an aspect ratio over {MAX_ASPECT:g}:1")


def _to_8_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grayscale image as 8-bit "L", scaled, not clipped:
    16-bit (and 32-bit integer images within 16 bits, as Pillow opens some 16-bit PNGs)
    divide by 257 (65535 -> 255); floats in [0, 1] multiply by 255."""
    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16") or (image.mode == "I" and top > 255):
        values = values / 257.0
    elif image.mode == "F" and top <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")
