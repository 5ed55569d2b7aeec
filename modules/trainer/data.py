"""tf.data input pipelines of the Trainer: the labelled and unlabelled training streams and
the eval stream (S4L_SPEC section 1.4 and 1.5).

The Trainer reads the raw tf.Examples (Transform runs with materialize=False): training
streams decode and augment here; the eval stream applies the Transform graph, exactly as the
exported serving signature does.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
import tensorflow_transform as tft

from modules import features
from modules.trainer import augment
from modules.trainer.experiment import Experiment

_AUTOTUNE = tf.data.AUTOTUNE
_TRAIN_SPEC = {
    features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def list_files(pattern: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no data files match {pattern!r}")
    return files


def split_stats(file_pattern: str) -> dict:
    """Reads split_stats.json of the Examples artifact that `file_pattern` points into."""
    uri = os.path.dirname(os.path.dirname(file_pattern))
    with tf.io.gfile.GFile(os.path.join(uri, features.SPLIT_STATS_FILE)) as f:
        return json.load(f)


def _records(files: list[str], shuffle: bool, seed: int) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed)
    return dataset.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), 8), num_parallel_calls=_AUTOTUNE, deterministic=True)


def training_stream(pattern: str, batch_size: int, exp: Experiment, seed: int,
                    cache: bool) -> tf.data.Dataset:
    """Repeating, shuffled, augmented batches of {"image": [B, S, S, 3], "label": [B]}."""
    dataset = _records(list_files(pattern), shuffle=True, seed=seed)
    dataset = dataset.map(lambda s: tf.io.parse_single_example(s, _TRAIN_SPEC),
                          num_parallel_calls=_AUTOTUNE)
    if cache:
        # Encoded bytes only: the original's --cache_dataset (spec section 1.4, step 4).
        dataset = dataset.cache()
    dataset = dataset.repeat().shuffle(exp.shuffle_buffer, seed=seed)
    # One [2] seed per element: the stateless augmentations then give the same images in the
    # same order on every run with this seed, however the parallel map is scheduled.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    dataset = tf.data.Dataset.zip((dataset, seeds)).map(
        lambda r, s: {"image": augment.train_preprocess(r[features.IMAGE_KEY], s, exp),
                      "label": tf.cast(r[features.LABEL_KEY], tf.int32)},
        num_parallel_calls=_AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True)


def train_dataset(train_patterns: list[str], exp: Experiment) -> tf.data.Dataset:
    """Zipped labelled and (if the method uses one) unlabelled streams, prefetched.

    Elements are {"labelled": {...}} or {"labelled": {...}, "unlabelled": {...}}. Supervised
    runs have no unlabelled stream at all (the original's dummy stream, spec section 1.5).
    """
    labelled_pattern, unlabelled_pattern = train_patterns
    streams = {"labelled": training_stream(
        labelled_pattern, exp.batch_size, exp, exp.seed, exp.cache_labelled)}
    if exp.unsup_batch_size > 0:
        streams["unlabelled"] = training_stream(
            unlabelled_pattern, exp.unsup_batch_size, exp, exp.seed + 1, cache=False)
    return tf.data.Dataset.zip(streams).prefetch(_AUTOTUNE)


def eval_dataset(pattern: str, tf_transform_output: tft.TFTransformOutput,
                 batch_size: int) -> tf.data.Dataset:
    """(images [N, S, S, 3], labels [N]) through the Transform graph; keeps the remainder."""
    raw_spec = tf_transform_output.raw_feature_spec()
    tft_layer = tf_transform_output.transform_features_layer()
    dataset = _records(list_files(pattern), shuffle=False, seed=0).batch(batch_size)

    def transform(serialized):
        transformed = tft_layer(tf.io.parse_example(serialized, raw_spec))
        return (transformed[features.TRANSFORMED_IMAGE_KEY],
                tf.cast(transformed[features.TRANSFORMED_LABEL_KEY], tf.int32))

    return dataset.map(transform, num_parallel_calls=_AUTOTUNE).prefetch(_AUTOTUNE)
