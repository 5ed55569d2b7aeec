"""A Hub consumer of the published modules (tensorflow-hub 0.16.1): checks that take a
beam_runner summary (summary.json); tests/test_pipeline_e2e.py runs them on its pipeline."""

import functools
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_transform as tft
import tf_keras as keras

from conftest import class_image, encode
from modules import features
from pipeline.components.hub_pusher import model_card

CLASSES = 3


def _images_and_examples(num_classes: int) -> tuple[list[bytes], np.ndarray]:
    """Serialized tf.Examples (JPEG and PNG, not the training size) and their labels."""
    examples, labels = [], []
    for k in range(num_classes):
        for i, fmt in enumerate(("JPEG", "PNG")):
            image = encode(class_image(k, 900 + i, size=(30, 26)), fmt)
            examples.append(tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[image]))})).SerializeToString())
            labels.append(k)
    return examples, np.array(labels)


@functools.lru_cache(maxsize=4)
def _preprocessed(pipeline_root: str, num_classes: int) -> tf.Tensor:
    """`_images_and_examples` as the Hub modules take them: the run's Transform graph applied
    (cached: loading the graph takes a while)."""
    examples, _ = _images_and_examples(num_classes)
    (transform_dir,) = glob.glob(os.path.join(pipeline_root, "Transform",
                                              "transform_graph", "*"))
    output = tft.TFTransformOutput(transform_dir)
    spec = {features.IMAGE_KEY: output.raw_feature_spec()[features.IMAGE_KEY]}
    raw = tf.io.parse_example(tf.constant(examples), spec)
    return output.transform_raw_features(raw)[features.TRANSFORMED_IMAGE_KEY]


def check_publication(summary: dict, num_classes: int, version: str = "1") -> dict:
    """The version directory holds both modules and a card that agrees with the run."""
    assert summary["hub_pushed"] is True
    version_dir = summary["hub_module_dir"]
    assert os.path.basename(version_dir) == version
    assert os.path.basename(os.path.dirname(version_dir)) == summary["model"]
    for name in ("classification", "feature_vector"):
        assert os.path.isfile(os.path.join(version_dir, name, "saved_model.pb"))
    with open(os.path.join(version_dir, model_card.CARD_JSON)) as f:
        card = json.load(f)
    assert card["version"] == version and card["model_name"] == summary["model"]
    assert card["evaluation"]["top1"] == pytest.approx(summary["top1"])
    assert card["evaluation"]["top5"] == pytest.approx(summary["top5"])
    assert card["evaluation"]["examples"] == summary["eval_examples"]
    assert card["data"]["labelled_examples"] == summary["splits"]["labelled"]
    assert len(card["data"]["class_names"]) == num_classes
    assert card["method"]["losses"] == {"supervised": 1.0}
    assert card["source_model"] == summary["model_dir"]
    assert card["modules"]["classification"]["output_shape"] == [None, num_classes]
    return card


def check_logits_match_serving(summary: dict, num_classes: int) -> None:
    """hub.KerasLayer on the published classification module gives the serving model's
    logits for the same encoded images; the feature vector has the card's width."""
    examples, _ = _images_and_examples(num_classes)
    serving = tf.saved_model.load(summary["pushed_to"]).signatures["serving_default"]
    expected = serving(examples=tf.constant(examples))["logits"].numpy()
    images = _preprocessed(summary["pipeline_root"], num_classes)
    version_dir = summary["hub_module_dir"]
    logits = hub.KerasLayer(os.path.join(version_dir, "classification"))(images)
    assert logits.shape == (len(examples), num_classes)
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-4, atol=1e-4)
    pre_logits = hub.KerasLayer(os.path.join(version_dir, "feature_vector"))(images)
    with open(os.path.join(version_dir, model_card.CARD_JSON)) as f:
        width = json.load(f)["modules"]["feature_vector"]["output_shape"][-1]
    assert pre_logits.shape == (len(examples), width) and width > 0


def check_fine_tune_one_step(summary: dict, num_classes: int) -> None:
    """A new head on the feature vector, fine-tuned end to end for one SGD step."""
    _, labels = _images_and_examples(num_classes)
    images = _preprocessed(summary["pipeline_root"], num_classes)
    features_layer = hub.KerasLayer(
        os.path.join(summary["hub_module_dir"], "feature_vector"), trainable=True)
    model = keras.Sequential([features_layer, keras.layers.Dense(num_classes)])
    # Eagerly: a traced train step through the restored ResNet takes 4x as long to build.
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    model.build(images.shape)
    assert features_layer.trainable_weights
    before = [w.numpy().copy() for w in features_layer.trainable_weights]
    loss = model.train_on_batch(images, labels)
    assert np.isfinite(loss)
    changed = [not np.array_equal(b, w.numpy())
               for b, w in zip(before, features_layer.trainable_weights, strict=True)]
    assert any(changed), "one SGD step changed none of the Hub module's weights"
