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
_ENDLESS = 2**62
# Block seeds start with seed * _PASSES_PER_SEED + pass: distinct for the labelled (seed)
# and unlabelled (seed + 1) streams up to a million passes.
_PASSES_PER_SEED = 1_000_003
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
    return int(_records(list_files(file_pattern)).reduce(
        tf.constant(0, tf.int64), lambda n, _: n + 1))


def _records(files: list[str] | tf.Tensor, num_files: int | None = None) -> tf.data.Dataset:
    """The serialized records of `files`, interleaved in a fixed order."""
    num_files = len(files) if num_files is None else num_files
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(num_files, 8), num_parallel_calls=_AUTOTUNE, deterministic=True)


def training_stream(pattern: str, batch_size: int, exp: Experiment, seed: int,
                    cache: bool, count: int, start_batch: int = 0,
                    parse: Callable[[tf.Tensor], dict] | None = None,
                    strong: bool = False, strong_only: bool = False,
                    input_context: tf.distribute.InputContext | None = None
                    ) -> tf.data.Dataset:
    """Repeating, shuffled, augmented batches of {"image": [B, S, S, 3], "label": [B]}.

    The stream is a function of the position in it, so that a run resumed after a kill
    trains on what an uninterrupted run would (`start_batch`: the batches already trained
    on). Pass p over the `count` records is ordered by seeds made of (`seed`, p), and element
    i is augmented with the stateless seed (`seed`, i). Starting at batch k reads at most one
    pass's records to find its place.

    `parse` maps a serialized example to {IMAGE_KEY, LABEL_KEY} (default: read both).
    With `strong`, elements also hold "strong": FixMatch's strong view of each image; with
    `strong_only`, "image" is that strong view (`Experiment.labelled_augment="strong"`).
    With `input_context` (multi-worker training), the stream is this worker's share of it:
    worker w of W keeps the w-th of the W equal slices of every global batch, batched per
    replica, so the workers together train on exactly the global batches; each worker still
    reads every record but decodes and augments only its own.
    """
    if count <= 0:
        raise ValueError(f"the training files {pattern!r} hold no records")
    parse = parse or (lambda s: tf.io.parse_single_example(s, _TRAIN_SPEC))
    files = list_files(pattern)
    # Encoded records only: the original's --cache_dataset (docs/original_s4l.md §1.4).
    cached = _records(files).cache() if cache else None
    block = max(1, min(exp.shuffle_buffer, count))

    def one_pass(number: tf.Tensor) -> tf.data.Dataset:
        # Dataset.shuffle cannot take a seed computed in the graph (tf.data's seed helper
        # tests it as a Python bool when the global seed is 0), so each pass is shuffled
        # with stateless ops instead: blocks of `shuffle_buffer` records are permuted, after
        # a new file order (uncached streams) and a rotation by up to one block, which moves
        # the block boundaries from pass to pass.
        pass_seed = tf.stack([tf.constant(seed, tf.int64), number])
        records = cached
        if records is None:
            records = _records(tf.random.experimental.stateless_shuffle(
                tf.constant(files), seed=pass_seed), len(files))
        shift = tf.random.stateless_uniform([], seed=pass_seed, maxval=block, dtype=tf.int64)
        rotated = records.skip(shift).concatenate(records.take(shift))
        block_seed = tf.constant(seed, tf.int64) * _PASSES_PER_SEED + number
        return rotated.batch(block).enumerate().map(
            lambda index, serialized: tf.random.experimental.stateless_shuffle(
                serialized, seed=tf.stack([block_seed, index]))).unbatch()

    start = start_batch * batch_size
    first_pass, offset = divmod(start, count)
    elements = tf.data.Dataset.range(first_pass, _ENDLESS).flat_map(one_pass).skip(offset)
    positions = tf.data.Dataset.range(start, _ENDLESS)

    def views(serialized: tf.Tensor, position: tf.Tensor) -> dict:
        record = parse(serialized)
        element_seed = tf.stack([tf.constant(seed, tf.int64), position])
        weak_seed, strong_seed = tf.unstack(
            tf.random.experimental.stateless_split(element_seed, num=2))
        if strong_only:
            image = augment.strong_preprocess(record[features.IMAGE_KEY], element_seed, exp)
        else:
            image = augment.train_preprocess(
                record[features.IMAGE_KEY], weak_seed if strong else element_seed, exp)
        out = {"image": image, "label": tf.cast(record[features.LABEL_KEY], tf.int32)}
        if strong:
            out["strong"] = augment.strong_preprocess(record[features.IMAGE_KEY],
                                                      strong_seed, exp)
        return out

    dataset = tf.data.Dataset.zip((elements, positions))
    per_batch = batch_size
    if input_context is not None:
        share = batch_size // input_context.num_input_pipelines
        worker = input_context.input_pipeline_id
        # Positions start at a multiple of batch_size: position % batch_size is the
        # element's place in its global batch.
        dataset = dataset.filter(lambda _, position: (position % batch_size) // share == worker)
        per_batch = input_context.get_per_replica_batch_size(batch_size)
    dataset = dataset.map(views, num_parallel_calls=_AUTOTUNE, deterministic=True)
    return dataset.batch(per_batch, drop_remainder=True)


def train_dataset(train_patterns: list[str], exp: Experiment, start_step: int = 0,
                  input_context: tf.distribute.InputContext | None = None
                  ) -> tf.data.Dataset:
    """Zipped labelled and (if the method uses one) unlabelled streams, prefetched, from
    optimizer step `start_step` on (a resumed run's first step); with `input_context`, this
    worker's share (training_stream).

    Elements are {"labelled": {...}} or {"labelled": {...}, "unlabelled": {...}}. Supervised
    runs have no unlabelled stream at all (the original's dummy stream, spec section 1.5).
    """
    labelled_pattern, unlabelled_pattern = train_patterns
    streams = {"labelled": training_stream(
        labelled_pattern, exp.batch_size, exp, exp.seed, exp.cache_labelled,
        count_examples(labelled_pattern, features.SPLITS[0]), start_step,
        strong_only=exp.labelled_augment == "strong", input_context=input_context)}
    if exp.unsup_batch_size > 0:
        streams["unlabelled"] = training_stream(
            unlabelled_pattern, exp.unsup_batch_size, exp, exp.seed + 1, cache=False,
            count=count_examples(unlabelled_pattern, features.SPLITS[1]),
            start_batch=start_step, strong=methods.uses_strong_view(exp),
            input_context=input_context)
    return tf.data.Dataset.zip(streams).prefetch(_AUTOTUNE)


def labelled_lookup(labelled_pattern: str) -> tf.lookup.StaticHashTable:
    """File name -> true label of every labelled-split image (-1 for other names)."""
    spec = {features.FILENAME_KEY: _TRAIN_SPEC[features.IMAGE_KEY],
            features.LABEL_KEY: _TRAIN_SPEC[features.LABEL_KEY]}
    names, labels = [], []
    for batch in _records(list_files(labelled_pattern)).batch(
            4096).map(lambda s: tf.io.parse_example(s, spec)):
        names.append(batch[features.FILENAME_KEY])
        labels.append(batch[features.LABEL_KEY])
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.concat(names, 0), tf.concat(labels, 0)),
        default_value=-1)


def pseudo_label_dataset(train_patterns: list[str], exp: Experiment, start_step: int = 0,
                         input_context: tf.distribute.InputContext | None = None
                         ) -> tf.data.Dataset:
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
                             exp.cache_labelled, count_examples(unlabelled_pattern,
                                                                features.SPLITS[1]),
                             start_step, parse=parse,
                             strong_only=exp.labelled_augment == "strong",
                             input_context=input_context)
    return tf.data.Dataset.zip({"labelled": stream}).prefetch(_AUTOTUNE)


def eval_dataset(pattern: str, tf_transform_output: tft.TFTransformOutput,
                 batch_size: int) -> tf.data.Dataset:
    """(images [N, S, S, 3], labels [N]) through the Transform graph; keeps the remainder."""
    raw_spec = tf_transform_output.raw_feature_spec()
    tft_layer = tf_transform_output.transform_features_layer()
    dataset = _records(list_files(pattern)).batch(batch_size)

    def transform(serialized):
        transformed = tft_layer(tf.io.parse_example(serialized, raw_spec))
        return (transformed[features.TRANSFORMED_IMAGE_KEY],
                tf.cast(transformed[features.TRANSFORMED_LABEL_KEY], tf.int32))

    # Several workers (evaluations during multi-worker training) split it by batches: an eval
    # split may have fewer files than there are workers.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.map(transform, num_parallel_calls=_AUTOTUNE).prefetch(
        _AUTOTUNE).with_options(options)
