"""The strong view of FixMatch-style consistency: RandAugment-style ops plus Cutout.

Each image gets `num_ops` ops drawn uniformly from `OPS`, each at a magnitude drawn uniformly
in [0, 1] (FixMatch's RandAugment variant, Sohn et al. 2020), then one Cutout square filled
with grey. All draws are stateless, from the image's seed, so a run is reproducible.

Written here rather than taken from a library: tf-models-official's RandAugment would pin
its own TensorFlow and tf-keras and bring dozens of packages, and KerasCV's targets Keras 3,
while this stack is TF 2.16 with tf-keras 2. Every op is a few tf.image / tf.raw_ops calls on
float32 [H, W, 3] in [0, 255].
"""

from __future__ import annotations

import math

import tensorflow as tf

_GREY = 127.5


def _affine(image: tf.Tensor, transform: list[tf.Tensor]) -> tf.Tensor:
    """Applies an output->input projective transform [a0..a7] (zero fill, bilinear)."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.cast(tf.stack(transform), tf.float32)[None],
        output_shape=tf.shape(image)[:2], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="CONSTANT")[0]


def _signed(magnitude: tf.Tensor, sign: tf.Tensor, scale: float) -> tf.Tensor:
    return magnitude * scale * tf.where(sign < 0.5, -1.0, 1.0)


def _rotate(image, m, s):
    angle = _signed(m, s, 30.0) * math.pi / 180.0
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    cy, cx = (size[0] - 1) / 2, (size[1] - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Rotation about the centre, as the output->input map.
    return _affine(image, [cos, -sin, cx - cos * cx + sin * cy,
                           sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])


def _shear_x(image, m, s):
    return _affine(image, [1.0, _signed(m, s, 0.3), 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def _shear_y(image, m, s):
    return _affine(image, [1.0, 0.0, 0.0, _signed(m, s, 0.3), 1.0, 0.0, 0.0, 0.0])


def _translate_x(image, m, s):
    shift = _signed(m, s, 0.3) * tf.cast(tf.shape(image)[1], tf.float32)
    return _affine(image, [1.0, 0.0, shift, 0.0, 1.0, 0.0, 0.0, 0.0])


def _translate_y(image, m, s):
    shift = _signed(m, s, 0.3) * tf.cast(tf.shape(image)[0], tf.float32)
    return _affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, shift, 0.0, 0.0])


def _brightness(image, m, s):
    return image * (1.0 + _signed(m, s, 0.9))


def _contrast(image, m, s):
    mean = tf.reduce_mean(image)
    return mean + (image - mean) * (1.0 + _signed(m, s, 0.9))


def _solarize(image, m, s):
    threshold = 256.0 * (1.0 - m)
    return tf.where(image >= threshold, 255.0 - image, image)


def _posterize(image, m, s):
    step = tf.pow(2.0, tf.round(4.0 * m))  # keep 8 - round(4m) bits
    return tf.floor(image / step) * step


def _autocontrast(image, m, s):
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scaled = (image - low) * 255.0 / tf.maximum(high - low, 1e-3)
    return tf.where(high > low, scaled, image)


def _identity(image, m, s):
    return image


OPS = (_identity, _autocontrast, _brightness, _contrast, _posterize, _rotate, _shear_x,
       _shear_y, _solarize, _translate_x, _translate_y)


def cutout(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """A `size` x `size` grey square at a random centre (clipped at the borders)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    centre = tf.random.stateless_uniform([2], seed, 0, 1)
    cy = tf.cast(centre[0] * tf.cast(height, tf.float32), tf.int32)
    cx = tf.cast(centre[1] * tf.cast(width, tf.float32), tf.int32)
    top, left = cy - size // 2, cx - size // 2
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return tf.where(inside[..., None], _GREY, image)


def strong_view(image: tf.Tensor, seed: tf.Tensor, num_ops: int = 2,
                cutout_size: int = 16) -> tf.Tensor:
    """`num_ops` random ops at random magnitudes, then Cutout; float32 [0, 255] in and out."""
    seeds = tf.random.experimental.stateless_split(seed, num=num_ops + 1)
    for i in range(num_ops):
        draws = tf.random.stateless_uniform([3], seeds[i])
        index = tf.minimum(tf.cast(draws[0] * len(OPS), tf.int32), len(OPS) - 1)
        image = tf.switch_case(index, [
            (lambda op=op, x=image, d=draws: op(x, d[1], d[2])) for op in OPS])
        image = tf.clip_by_value(image, 0.0, 255.0)
    if cutout_size:
        image = cutout(image, cutout_size, seeds[num_ops])
    return image
