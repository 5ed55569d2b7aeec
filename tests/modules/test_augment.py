"""Random training augmentations (docs/original_s4l.md §2.2), stateless and seeded."""

import numpy as np
import tensorflow as tf

from conftest import class_image, encode
from modules.trainer import augment, experiment


def _seed(i):
    return tf.constant([i, 7], tf.int64)


def test_inception_crop_area_and_aspect():
    image = tf.zeros([100, 120, 3])
    for i in range(50):
        crop = augment.inception_crop(image, _seed(i), area_min=0.05)
        h, w = crop.shape[:2]
        # min_object_covered=0.1 with the whole image as the box: area >= 10 %.
        assert h * w >= 0.1 * 100 * 120 - 1
        assert 0.75 - 0.05 <= w / h <= 1.33 + 0.05 or (h, w) == (100, 120)


def test_train_preprocess_shape_range_and_seeding():
    exp = experiment.for_dataset("synthetic").replace(hsvnoise=True)
    encoded = tf.constant(encode(class_image(3, 1, size=(40, 50)), "JPEG"))
    a = augment.train_preprocess(encoded, _seed(1), exp).numpy()
    again = augment.train_preprocess(encoded, _seed(1), exp).numpy()
    other = augment.train_preprocess(encoded, _seed(2), exp).numpy()
    assert a.shape == (32, 32, 3)
    assert a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6
    np.testing.assert_array_equal(a, again)
    assert not np.allclose(a, other)


def test_hsv_noise_keeps_range():
    image = tf.random.stateless_uniform([8, 8, 3], _seed(0), 0, 255)
    out = augment.hsv_noise(image, _seed(3)).numpy()
    assert out.min() >= 0 and out.max() <= 255 + 1e-3
    # It does change the colours (an identity function passes the range check alone).
    assert np.abs(out - image.numpy()).mean() > 1.0


def test_pad_crop_translates_by_at_most_the_padding():
    image = tf.reshape(tf.range(32 * 32 * 3, dtype=tf.float32) + 1, [32, 32, 3])
    shifts = set()
    for i in range(40):
        out = augment.pad_crop(image, 4, _seed(i)).numpy()
        assert out.shape == (32, 32, 3)
        # The pixel that was at (0, 0) is now at (dy, dx), or was cropped away.
        found = np.argwhere(out[..., 0] == 1.0)
        if len(found):
            dy, dx = found[0]
            assert 0 <= dy <= 4 and 0 <= dx <= 4
            shifts.add((int(dy), int(dx)))
        # Everything else is the image, shifted, or zero padding.
        assert set(np.unique(out)) <= set(np.unique(image.numpy())) | {0.0}
    assert len(shifts) > 5  # it does move the image


def test_small_image_training_view_is_the_eval_canvas_shifted_and_flipped():
    """No resize skew: with pad_crop 0 and no flip, the training input of a 28x28 image is
    exactly the Transform (eval) output."""
    from modules.transform import image_ops

    exp = experiment.for_dataset("fashion_mnist")
    assert (exp.image_fit, exp.pad_crop, exp.inception_crop) == ("zero_pad", 4, False)
    encoded = tf.constant(encode(class_image(3, 1, size=(28, 28)), "PNG"))
    plain = exp.replace(pad_crop=0, flip_lr=False)
    train = augment.train_preprocess(encoded, _seed(1), plain).numpy()
    evaluated = image_ops.eval_preprocess(encoded, exp.resize_size, exp.image_size,
                                          exp.image_fit).numpy()
    np.testing.assert_array_equal(train, evaluated)
    assert (evaluated[:2] == -1).all() and (evaluated[:, -2:] == -1).all()  # zero border
    shifted = augment.train_preprocess(encoded, _seed(1), exp).numpy()
    assert shifted.shape == (32, 32, 3) and not np.array_equal(shifted, evaluated)
