"""Deterministic preprocessing ops and preprocessing_fn (docs/original_s4l.md §2.2)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import class_image, encode
from modules import features
from modules.transform import image_ops, preprocessing


def test_decode_grayscale_png_to_rgb():
    image = image_ops.decode(tf.constant(encode(class_image(0, 0, mode="L"), "PNG")))
    assert image.shape == (20, 24, 3) and image.dtype == tf.uint8
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize("hw,size,expected", [((20, 24), 32, (32, 38)), ((300, 200), 256,
                                                                         (384, 256)),
                                              ((256, 256), 256, (256, 256))])
def test_resize_small_keeps_aspect_with_rounding(hw, size, expected):
    # New sides are round(side * size / min(h, w)) (spec section 2.2).
    out = image_ops.resize_small(tf.zeros([*hw, 3], tf.uint8), size)
    assert tuple(out.shape[:2]) == expected and out.dtype == tf.float32


def test_resize_small_is_area_interpolation():
    # A 2x downscale with area interpolation is the mean of each 2x2 block.
    image = tf.reshape(tf.range(16, dtype=tf.float32), [4, 4, 1])
    out = image_ops.resize_small(tf.tile(image, [1, 1, 3]), 2)[..., 0].numpy()
    np.testing.assert_allclose(out, [[2.5, 4.5], [10.5, 12.5]])


def test_central_crop_offsets():
    image = tf.reshape(tf.range(7 * 9, dtype=tf.float32), [7, 9, 1])
    out = image_ops.central_crop(image, 3)[..., 0].numpy()
    # Offsets ((7 - 3) // 2, (9 - 3) // 2) = (2, 3).
    np.testing.assert_array_equal(out[0], [2 * 9 + 3, 2 * 9 + 4, 2 * 9 + 5])


def test_to_minus1_1():
    out = image_ops.to_minus1_1(tf.constant([0, 127.5, 255], tf.float32)).numpy()
    np.testing.assert_allclose(out, [-1, 0, 1])


def test_preprocessing_fn_shapes_and_range():
    encoded = [encode(class_image(i, i, size=(28 + i, 30)), fmt) for i, fmt in
               enumerate(["PNG", "JPEG", "PNG"])]
    inputs = {features.IMAGE_KEY: tf.constant(encoded)[:, None],
              features.LABEL_KEY: tf.constant([[0], [1], [2]], tf.int64)}
    out = preprocessing.preprocessing_fn(inputs, {"image_size": 32, "resize_size": 36})
    images = out[features.TRANSFORMED_IMAGE_KEY].numpy()
    assert images.shape == (3, 32, 32, 3)
    assert images.min() >= -1 and images.max() <= 1
    np.testing.assert_array_equal(out[features.TRANSFORMED_LABEL_KEY].numpy(), [0, 1, 2])
    assert features.TRANSFORMED_LABEL_KEY not in preprocessing.preprocessing_fn(
        {features.IMAGE_KEY: inputs[features.IMAGE_KEY]}, {"image_size": 32, "resize_size": 36})


def test_zero_pad_centres_small_images_and_resizes_large_ones():
    small = tf.fill([28, 28, 3], 200.0)
    out = image_ops.zero_pad(small, 32).numpy()
    assert out.shape == (32, 32, 3)
    assert (out[2:30, 2:30] == 200).all() and out.sum() == 200 * 28 * 28 * 3
    large = tf.fill([64, 80, 3], 100.0)
    out = image_ops.zero_pad(large, 32).numpy()
    assert out.shape == (32, 32, 3) and np.allclose(out, 100)  # area resize + central crop


def test_preprocessing_fn_zero_pad_keeps_the_pixels():
    image = class_image(1, 2, size=(28, 28))
    inputs = {features.IMAGE_KEY: tf.constant([encode(image, "PNG")])[:, None]}
    out = preprocessing.preprocessing_fn(
        inputs, {"image_size": 32, "resize_size": 32, "image_fit": "zero_pad"})
    images = out[features.TRANSFORMED_IMAGE_KEY].numpy()
    np.testing.assert_allclose(images[0, 2:30, 2:30],
                               np.asarray(image, np.float32) / 255 * 2 - 1, atol=1e-6)
