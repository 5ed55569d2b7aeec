"""Transform module: `preprocessing_fn`, the deterministic eval/serving preprocessing.

The random training augmentations (inception crop, flip) run in the Trainer's tf.data
pipeline (modules/trainer/augment.py), not here: Transform runs once per example and its
graph is shared with serving (docs/environment.md §3).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from modules import features
from modules.transform import image_ops


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]) -> dict:
    """Decodes and eval-preprocesses images; passes the label through unchanged.

    Args:
      inputs: Raw features, dense [N, 1] as the curated schema declares them.
      custom_config: `image_size` (output side), `resize_size` (shorter side before the
        crop) and `image_fit` ("resize_crop", the default, or "zero_pad").

    Returns:
      `image`: float32 [N, image_size, image_size, 3] in [-1, 1]; `label`: int64 [N].
    """
    encoded = tf.reshape(inputs[features.IMAGE_KEY], [-1])
    images = image_ops.eval_preprocess_batch(
        encoded, int(custom_config["resize_size"]), int(custom_config["image_size"]),
        custom_config.get("image_fit", "resize_crop"))
    outputs = {features.TRANSFORMED_IMAGE_KEY: images}
    if features.LABEL_KEY in inputs:
        outputs[features.TRANSFORMED_LABEL_KEY] = tf.reshape(inputs[features.LABEL_KEY], [-1])
    return outputs
