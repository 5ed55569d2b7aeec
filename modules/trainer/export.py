"""Exported SavedModels (S4L_SPEC section 8, TFX_NOTES section 3 "Export").

* `Format-Serving/`: an uncompiled functional inference model whose `serving_default` takes
  serialized tf.Examples [N] (the Transform graph runs inside) and returns `probabilities`
  and `logits`. TFMA, BulkInferrer, Pusher and serving all use it.
* `Format-Hub/classification/`: a TF2 reusable SavedModel, images [N, H, W, 3] in [-1, 1]
  -> logits [N, K] (the original hub module's `default` output).
* `Format-Hub/feature_vector/`: the same images -> `pre_logits` [N, C].
* `Format-Weights/`: the layers' weights without the optimizer, which a later stage
  warm-starts from (MOAM step 3).
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from modules import features
from modules.trainer import training
from modules.trainer.training import S4LModel

SERVING_SIGNATURE = "serving_default"


def hub_dir(serving_model_dir: str) -> str:
    """`Format-Hub` next to the serving model, inside the same Model artifact."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), "Format-Hub")


def weights_prefix(serving_model_dir: str) -> str:
    """Checkpoint prefix of `Format-Weights`, inside the same Model artifact."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), "Format-Weights",
                        "weights")


def save_weights(model: S4LModel, serving_model_dir: str) -> str:
    """Writes the layers' weights (not the optimizer) to `Format-Weights`; returns the prefix."""
    prefix = weights_prefix(serving_model_dir)
    training.weights_checkpoint(model).write(prefix)
    return prefix


def inference_model(model: S4LModel, image_size: int | None) -> keras.Model:
    """A functional model sharing `model`'s layers: images -> logits, probabilities, features."""
    images = keras.Input([image_size, image_size, 3], name="image")
    outputs = model(images, training=False)
    logits = outputs["classes"]
    return keras.Model(images, {
        "logits": logits,
        "probabilities": keras.layers.Softmax(name="probabilities")(logits),
        "pre_logits": outputs["pre_logits"],
    })


def save_serving_model(model: S4LModel, serving_model_dir: str,
                       tf_transform_output: tft.TFTransformOutput) -> None:
    """Writes the serving model with a single-input serialized-tf.Example signature."""
    exp = model.exp
    inference = inference_model(model, exp.image_size)
    inference.tft_layer = tf_transform_output.transform_features_layer()
    # Requests need only the image: no label, file name or other metadata.
    raw_spec = {features.IMAGE_KEY: tf_transform_output.raw_feature_spec()[features.IMAGE_KEY]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        transformed = inference.tft_layer(tf.io.parse_example(serialized, raw_spec))
        outputs = inference(transformed[features.TRANSFORMED_IMAGE_KEY], training=False)
        return {"probabilities": outputs["probabilities"], "logits": outputs["logits"]}

    tf.saved_model.save(inference, serving_model_dir, signatures={SERVING_SIGNATURE: serve})


def save_hub_modules(model: S4LModel, directory: str) -> dict[str, str]:
    """Writes the classification and feature-vector modules; returns their paths."""
    images = keras.Input([None, None, 3], name="image")
    outputs = model(images, training=False)
    paths = {}
    for name, output in (("classification", outputs["classes"]),
                         ("feature_vector", outputs["pre_logits"])):
        paths[name] = os.path.join(directory, name)
        tf.saved_model.save(keras.Model(images, output, name=name), paths[name])
    return paths
