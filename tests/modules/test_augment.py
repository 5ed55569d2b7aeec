"""Random training augmentations (S4L_SPEC section 2.2)."""

import numpy as np
import tensorflow as tf

from conftest import class_image, encode
from modules.trainer import augment, experiment


def test_inception_crop_area_and_aspect():
    tf.random.set_seed(0)
    image = tf.zeros([100, 120, 3])
    for _ in range(50):
        crop = augment.inception_crop(image, area_min=0.05)
        h, w = crop.shape[:2]
        # min_object_covered=0.1 with the whole image as the box: area >= 10 %.
        assert h * w >= 0.1 * 100 * 120 - 1
        assert 0.75 - 0.05 <= w / h <= 1.33 + 0.05 or (h, w) == (100, 120)


def test_train_preprocess_shape_range_and_randomness():
    exp = experiment.for_dataset("synthetic").replace(hsvnoise=True)
    encoded = tf.constant(encode(class_image(3, 1, size=(40, 50)), "JPEG"))
    a = augment.train_preprocess(encoded, exp).numpy()
    b = augment.train_preprocess(encoded, exp).numpy()
    assert a.shape == (32, 32, 3)
    assert a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6
    assert not np.allclose(a, b)


def test_hsv_noise_keeps_range():
    tf.random.set_seed(1)
    image = tf.random.uniform([8, 8, 3], 0, 255)
    out = augment.hsv_noise(image).numpy()
    assert out.min() >= 0 and out.max() <= 255 + 1e-3
