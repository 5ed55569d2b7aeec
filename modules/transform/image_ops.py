"""Deterministic inception preprocessing ops (docs/original_s4l.md §2.2), shared by Transform,
the Trainer's input pipeline and the exported signatures.

Eval pipeline: decode -> `resize_small(resize_size)` (area, shorter side) ->
`central_crop(image_size)` -> `-1_to_1`; or, for small images (`image_fit="zero_pad"`),
decode -> `zero_pad(image_size)` -> `-1_to_1`. TF2 `tf.image.resize` uses half-pixel centres,
unlike TF1 `resize_images`; the difference is minor (spec section 10.3).
"""

from __future__ import annotations

import tensorflow as tf


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes one JPEG/PNG/GIF/BMP of any size to uint8 [H, W, 3] (grayscale becomes RGB)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_small(image: tf.Tensor, size: int) -> tf.Tensor:
    """Area-resizes so the shorter side is `size`, keeping the aspect ratio; float32 [0, 255]."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.minimum(height, width)
    new_size = tf.cast(tf.round(tf.stack([height * scale, width * scale])), tf.int32)
    return tf.image.resize(image, tf.maximum(new_size, size), method="area")


def central_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """The central `size` x `size` crop; offsets ((H - size) // 2, (W - size) // 2)."""
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def zero_pad(image: tf.Tensor, size: int) -> tf.Tensor:
    """Centres the image on a `size` x `size` zero canvas; float32 [0, 255].

    Images no larger than the canvas keep every pixel at its size (28x28 Fashion-MNIST in
    32x32 gains a 2-pixel border); a larger one is area-resized so its shorter side is
    `size` and centre-cropped, as `resize_small` + `central_crop` would.
    """
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    image = tf.cond(tf.minimum(shape[0], shape[1]) > size,
                    lambda: resize_small(image, size), lambda: image)
    return tf.image.resize_with_crop_or_pad(image, size, size)


def fit_image(image: tf.Tensor, image_fit: str, resize_size: int, image_size: int
              ) -> tf.Tensor:
    """A decoded image at `image_size` x `image_size` by the experiment's `image_fit`."""
    if image_fit == "zero_pad":
        return zero_pad(image, image_size)
    return central_crop(resize_small(image, resize_size), image_size)


def to_minus1_1(image: tf.Tensor) -> tf.Tensor:
    """Maps [0, 255] to [-1, 1] as float32: x / 255 * 2 - 1."""
    return tf.cast(image, tf.float32) / 255.0 * 2.0 - 1.0


def eval_preprocess(encoded: tf.Tensor, resize_size: int, image_size: int,
                    image_fit: str = "resize_crop") -> tf.Tensor:
    """`resize_small(resize_size)|crop(image_size)|-1_to_1` (or `zero_pad(image_size)|
    -1_to_1`) on one encoded image."""
    return to_minus1_1(fit_image(decode(encoded), image_fit, resize_size, image_size))


def eval_preprocess_batch(encoded: tf.Tensor, resize_size: int, image_size: int,
                          image_fit: str = "resize_crop") -> tf.Tensor:
    """`eval_preprocess` over a [N] string batch; returns float32 [N, S, S, 3]."""
    return tf.map_fn(
        lambda e: eval_preprocess(e, resize_size, image_size, image_fit),
        encoded,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )
