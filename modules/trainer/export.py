"""Exported SavedModels (docs/original_s4l.md §8, docs/environment.md §3 "Export").

* `Format-Serving/`: a SavedModel whose `serving_default` takes serialized tf.Examples [N]
  (the Transform graph runs inside) and returns `probabilities` and `logits`. TFMA,
  BulkInferrer, Pusher and serving all use it. Its `averaged_views` signature takes the same
  input and returns the logits averaged over the views the classifier trained on
  (modules/trainer/views.py), for a BulkInferrer that pseudo-labels with them.
* `Format-Hub/classification/`: a TF2 reusable SavedModel (`__call__(images, training)`,
  variables, regularization losses), images [N, H, W, 3] in [-1, 1] -> logits [N, K] (the
  original hub module's `default` output), plus the same as `serving_default`.
* `Format-Hub/feature_vector/`: the same images -> `pre_logits` [N, C].
* `Format-Weights/`: the layers' weights without the optimizer, which a later stage
  warm-starts from (MOAM step 3).
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_transform as tft

from modules import features
from modules.trainer import training, views
from modules.trainer.training import S4LModel

SERVING_SIGNATURE = features.SERVING_SIGNATURE


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


# Why plain trackable objects and not `tf.saved_model.save(keras_model)`: Keras' SavedModel
# serialisation traces every layer's call functions again (training on and off) so that the
# model can be rebuilt as Keras layers, which nothing here needs (TFMA, BulkInferrer, serving
# and hub.KerasLayer use the functions below). On the small ResNet that took about 20 s per
# SavedModel against about 7 s for these, three times per trained model.
def _variables_holder(model: S4LModel) -> tf.train.Checkpoint:
    """A trackable object that holds `model`'s variables (so the SavedModel saves them)."""
    holder = tf.train.Checkpoint()
    holder.variables = list(model.variables)
    holder.trainable_variables = list(model.trainable_variables)
    return holder


def save_serving_model(model: S4LModel, serving_model_dir: str,
                       tf_transform_output: tft.TFTransformOutput) -> None:
    """Writes the serving model with a single-input serialized-tf.Example signature."""
    servable = _variables_holder(model)
    servable.tft_layer = tf_transform_output.transform_features_layer()
    # Requests need only the image: no label, file name or other metadata.
    raw_spec = {features.IMAGE_KEY: tf_transform_output.raw_feature_spec()[features.IMAGE_KEY]}

    examples_spec = [tf.TensorSpec([None], tf.string, name="examples")]

    def images(serialized: tf.Tensor) -> tf.Tensor:
        transformed = servable.tft_layer(tf.io.parse_example(serialized, raw_spec))
        return transformed[features.TRANSFORMED_IMAGE_KEY]

    @tf.function(input_signature=examples_spec, autograph=False)
    def serve(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(images(serialized), training=False)["classes"]
        return {"probabilities": tf.nn.softmax(logits), "logits": logits}

    @tf.function(input_signature=examples_spec, autograph=False)
    def serve_averaged(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = views.average(
            model(views.make_views(images(serialized), model.exp), training=False)["classes"],
            model.exp)
        return {"probabilities": tf.nn.softmax(logits), "logits": logits}

    tf.saved_model.save(servable, serving_model_dir,
                        signatures={SERVING_SIGNATURE: serve,
                                    features.AVERAGED_VIEWS_SIGNATURE: serve_averaged})


def _hub_module(forward: tf.types.experimental.PolymorphicFunction, output: str,
                signature_key: str, variables: tf.train.Checkpoint
                ) -> tuple[tf.train.Checkpoint, tf.types.experimental.ConcreteFunction]:
    """A TF2 reusable SavedModel (what hub.KerasLayer loads): `__call__(images, training)`
    returning `forward`'s `output`, `variables`, `trainable_variables` and
    `regularization_losses` (from `variables`); and its `serving_default` signature
    (images -> {signature_key: output}), inference only."""
    module = variables
    images_spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="image")

    @tf.function(autograph=False)
    def call(images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return forward(images, training)[output]

    for mode in (False, True):
        call.get_concrete_function(images_spec, mode)
    module.__call__ = call
    signature = tf.function(lambda images: {signature_key: call(images, False)},
                            input_signature=[images_spec], autograph=False)
    return module, signature.get_concrete_function()


def save_hub_modules(model: S4LModel, directory: str) -> dict[str, str]:
    """Writes the classification and feature-vector modules; returns their paths."""
    # One trace of the network per mode, shared by both modules.
    @tf.function(autograph=False)
    def forward(images: tf.Tensor, training: bool) -> dict[str, tf.Tensor]:
        outputs = model(images, training=training)
        return {"classes": outputs["classes"], "pre_logits": outputs["pre_logits"]}

    paths = {}
    for name, output, key in (("classification", "classes", "logits"),
                              ("feature_vector", "pre_logits", "pre_logits")):
        paths[name] = os.path.join(directory, name)
        holder = _variables_holder(model)
        # The weight-decay penalty (half L2 on kernels), for fine-tuning with the module.
        holder.regularization_losses = [tf.function(lambda: tf.add_n(model.losses),
                                                    input_signature=[], autograph=False)
                                        ] if model.losses else []
        module, signature = _hub_module(forward, output, key, holder)
        tf.saved_model.save(module, paths[name], signatures={SERVING_SIGNATURE: signature})
    return paths
