"""tf.data input pipelines of the Trainer: the labelled and unlabelled training streams and
the eval stream (docs/original_s4l.md §1.4 and 1.5).

The Trainer reads the raw tf.Examples (Transform runs with materialize=False): training
streams decode and augment here; the eval stream applies the Transform graph, exactly as the
exported serving signature does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from modules import features
from modules.trainer import augment, methods
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


def split_stats(file_pattern: str) -> dict | None:
    """split_stats.json of the Examples artifact that `file_pattern` points into, or None
    (BulkInferrer's output examples have none)."""
    path = os.path.join(os.path.dirname(os.path.dirname(file_pattern)),
                        features.SPLIT_STATS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def count_examples(file_pattern: str, split: str) -> int:
    """Records of `split`: from split_stats.json where there is one, else by reading them."""
    stats = split_stats(file_pattern)
    if stats is not None:
        return int(stats["splits"][split]["count"])
    return int(_records(list_files(file_pattern), shuffle=False, seed=0).reduce(
        tf.constant(0, tf.int64), lambda n, _: n + 1))


def _records(files: list[str], shuffle: bool, seed: int) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed)
    return dataset.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), 8), num_parallel_calls=_AUTOTUNE, deterministic=True)


def training_stream(pattern: str, batch_size: int, exp: Experiment, seed: int,
                    cache: bool, parse: Callable[[tf.Tensor], dict] | None = None,
                    strong: bool = False) -> tf.data.Dataset:
    """Repeating, shuffled, augmented batches of {"image": [B, S, S, 3], "label": [B]}.

    `parse` maps a serialized example to {IMAGE_KEY, LABEL_KEY} (default: read both).
    With `strong`, elements also hold "strong": FixMatch's strong view of each image.
    """
    parse = parse or (lambda s: tf.io.parse_single_example(s, _TRAIN_SPEC))
    dataset = _records(list_files(pattern), shuffle=True, seed=seed)
    dataset = dataset.map(parse, num_parallel_calls=_AUTOTUNE)
    if cache:
        # Encoded bytes only: the original's --cache_dataset (spec section 1.4, step 4).
        dataset = dataset.cache()
    dataset = dataset.repeat().shuffle(exp.shuffle_buffer, seed=seed)
    # One [2] seed per element: the stateless augmentations then give the same images in the
    # same order on every run with this seed, however the parallel map is scheduled.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def views(record: dict, seed: tf.Tensor) -> dict:
        weak_seed, strong_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, num=2))
        out = {"image": augment.train_preprocess(record[features.IMAGE_KEY],
                                                 seed if not strong else weak_seed, exp),
               "label": tf.cast(record[features.LABEL_KEY], tf.int32)}
        if strong:
            out["strong"] = augment.strong_preprocess(record[features.IMAGE_KEY],
                                                      strong_seed, exp)
        return out

    dataset = tf.data.Dataset.zip((dataset, seeds)).map(
        views, num_parallel_calls=_AUTOTUNE, deterministic=True)
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
            unlabelled_pattern, exp.unsup_batch_size, exp, exp.seed + 1, cache=False,
            strong=methods.uses_strong_view(exp))
    return tf.data.Dataset.zip(streams).prefetch(_AUTOTUNE)


def labelled_lookup(labelled_pattern: str) -> tf.lookup.StaticHashTable:
    """File name -> true label of every labelled-split image (-1 for other names)."""
    spec = {features.FILENAME_KEY: _TRAIN_SPEC[features.IMAGE_KEY],
            features.LABEL_KEY: _TRAIN_SPEC[features.LABEL_KEY]}
    names, labels = [], []
    for batch in _records(list_files(labelled_pattern), shuffle=False, seed=0).batch(
            4096).map(lambda s: tf.io.parse_example(s, spec)):
        names.append(batch[features.FILENAME_KEY])
        labels.append(batch[features.LABEL_KEY])
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.concat(names, 0), tf.concat(labels, 0)),
        default_value=-1)


def pseudo_label_dataset(train_patterns: list[str], exp: Experiment) -> tf.data.Dataset:
    """Every training image with its true label where it is in the labelled subset and its
    pseudo-label (argmax of the labeller's logits) elsewhere (docs/original_s4l.md §7.2).

    The true labels come only from the labelled split (never from the unlabelled split's
    own label field), so no label outside the labelled subset is used.
    """
    labelled_pattern, unlabelled_pattern = train_patterns
    table = labelled_lookup(labelled_pattern)
    spec = {features.IMAGE_KEY: _TRAIN_SPEC[features.IMAGE_KEY],
            features.FILENAME_KEY: _TRAIN_SPEC[features.IMAGE_KEY],
            features.PSEUDO_LOGITS_KEY: tf.io.FixedLenFeature([exp.num_classes], tf.float32)}

    def parse(serialized: tf.Tensor) -> dict:
        example = tf.io.parse_single_example(serialized, spec)
        true_label = table.lookup(example[features.FILENAME_KEY])
        pseudo = tf.argmax(example[features.PSEUDO_LOGITS_KEY], output_type=tf.int64)
        return {features.IMAGE_KEY: example[features.IMAGE_KEY],
                features.LABEL_KEY: tf.where(true_label >= 0, true_label, pseudo)}

    stream = training_stream(unlabelled_pattern, exp.batch_size, exp, exp.seed,
                             exp.cache_labelled, parse=parse)
    return tf.data.Dataset.zip({"labelled": stream}).prefetch(_AUTOTUNE)


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
