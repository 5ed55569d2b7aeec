"""Random training augmentations for the Trainer's tf.data pipeline (docs/original_s4l.md §2.2).

Deterministic ops come from modules/transform/image_ops.py, so train and eval share decoding
and scaling. Pipelines: supervised 10 % = `inception_crop|resize|flip_lr|-1_to_1`; 1 % adds
`hsvnoise` after the flip; S4L-Exemplar makes P such patches per image, with `hsvnoise`.
The small-image recipe: `zero_pad|pad_crop(4)|flip_lr|-1_to_1` (Exemplar: an inception crop
of the padded image, resized back, before the flip).
"""

from __future__ import annotations

import tensorflow as tf

from modules.trainer import methods, strong_augment
from modules.trainer.experiment import Experiment
from modules.transform import image_ops


def inception_crop(image: tf.Tensor, seed: tf.Tensor, area_min: float = 0.05) -> tf.Tensor:
    """Random crop of TF-slim's inception preprocessing, no resize.

    The whole image is the box, so `min_object_covered=0.1` makes the effective area range
    [max(0.1, area_min), 1]; aspect ratio (0.75, 1.33), 100 attempts, whole image as fallback.
    Stateless: the crop depends only on `seed` ([2] int), so runs are reproducible even with
    parallel map calls.
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=(0.75, 1.33), area_range=(area_min, 1.0),
        max_attempts=100, use_image_if_no_bounding_boxes=True)
    return tf.slice(image, begin, size)


def hsv_noise(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """S4L's `hsvnoise` on RGB in [0, 255]: hue shift +-0.1; S and V: x^(2^U(-2,2)) *
    2^U(-0.5,0.5) + U(-0.1,0.1), each with its own draws; clipped to [0, 1] in HSV."""
    draws = tf.random.stateless_uniform([7], seed=seed)
    uniform = lambda i, low, high: low + (high - low) * draws[i]  # noqa: E731
    hsv = tf.image.rgb_to_hsv(image / 255.0)
    h, s, v = tf.unstack(hsv, axis=-1)
    h = tf.math.floormod(1.0 + h + uniform(0, -0.1, 0.1), 1.0)

    def jitter(x, i):
        gamma = tf.pow(2.0, uniform(i, -2.0, 2.0))
        gain = tf.pow(2.0, uniform(i + 1, -0.5, 0.5))
        return tf.pow(x, gamma) * gain + uniform(i + 2, -0.1, 0.1)

    hsv = tf.clip_by_value(tf.stack([h, jitter(s, 1), jitter(v, 4)], axis=-1), 0.0, 1.0)
    return tf.image.hsv_to_rgb(hsv) * 255.0


def pad_crop(image: tf.Tensor, pad: int, seed: tf.Tensor) -> tf.Tensor:
    """A random translation by up to `pad` pixels: zero-pad each side by `pad`, then crop
    the original size back at a random offset (the CIFAR ResNets' augmentation)."""
    height, width = image.shape[0], image.shape[1]
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, [height, width, 3], seed=seed)


def augment(image: tf.Tensor, seed: tf.Tensor, exp: Experiment) -> tf.Tensor:
    """One decoded image -> float32 [S, S, 3] in [-1, 1] with the preset's augmentations."""
    crop_seed, flip_seed, hsv_seed, shift_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=4))
    size = [exp.image_size, exp.image_size]
    if exp.image_fit == "zero_pad":
        # The eval op first, so train and eval see the same canvas (no resize skew).
        image = image_ops.zero_pad(image, exp.image_size)
        if exp.inception_crop:
            image = tf.image.resize(inception_crop(image, crop_seed, exp.crop_area_min), size)
        image.set_shape([*size, 3])
    else:
        if exp.inception_crop:
            image = inception_crop(image, crop_seed, exp.crop_area_min)
        # Bilinear, aspect ratio not kept: the original's `resize(224)`.
        image = tf.image.resize(image, size, method="bilinear")
    if exp.pad_crop:
        image = pad_crop(image, exp.pad_crop, shift_seed)
    if exp.flip_lr:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if exp.hsvnoise:
        # Per-pixel colour noise commutes with the flip, so either order of the originals'
        # pipelines (supervised 1 %: flip first, exemplar: hsvnoise first) is the same.
        image = hsv_noise(image, hsv_seed)
    return image_ops.to_minus1_1(image)


def strong_preprocess(encoded: tf.Tensor, seed: tf.Tensor, exp: Experiment) -> tf.Tensor:
    """FixMatch's strong view: the weak augmentations with their own draws, then
    `strong_ops` RandAugment-style ops and Cutout (strong_augment.py); [S, S, 3] in [-1, 1]."""
    weak_seed, strong_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    image = (augment(image_ops.decode(encoded), weak_seed, exp) + 1.0) * 127.5
    image = strong_augment.strong_view(image, strong_seed, exp.strong_ops, exp.cutout_size)
    return image_ops.to_minus1_1(image)


def train_preprocess(encoded: tf.Tensor, seed: tf.Tensor, exp: Experiment) -> tf.Tensor:
    """One encoded image -> its training input, all random draws from `seed` ([2] int).

    [S, S, 3] in [-1, 1]; for S4L-Exemplar, [P, S, S, 3]: P independently cropped, flipped and
    colour-jittered patches of the image (`crop_inception_patches(P)|hsvnoise|flip_lr`); with
    `exemplar_classify_crops=False` the first without the inception crop.
    """
    image = image_ops.decode(encoded)
    patches = methods.train_patches(exp)
    if patches == 1:
        return augment(image, seed, exp)
    seeds = tf.random.experimental.stateless_split(seed, num=patches)
    # exemplar_classify_crops=False: patch 0 is the classifier's, cut as the recipe cuts.
    first = exp if exp.exemplar_classify_crops else exp.replace(inception_crop=False)
    return tf.stack([augment(image, seeds[i], first if i == 0 else exp)
                     for i in range(patches)])
