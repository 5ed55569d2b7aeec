"""Builds the `labelled`, `unlabelled` and `eval` splits from a data source.

One streaming pass converts and validates every training record and writes it to the
`unlabelled` split (S4L's unlabelled stream is all training images, labelled ones included,
docs/original_s4l.md §1.5); the labelled subset is then filtered out of those already-converted
records, so each image is decoded once. The test part becomes `eval`, or, with
`validation_images`, a class-balanced hold-out of the training images does (for tuning
without reading the test set; the held-out images are in neither training split).
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Iterable, Iterator

import tensorflow as tf
from absl import logging

from modules import features
from pipeline.components.example_gen import records as records_lib
from pipeline.components.example_gen import splits as splits_lib
from pipeline.components.example_gen.sources import TEST, TRAIN, DataSource
from pipeline.components.example_gen.splits import SplitOptions

MAX_LISTED_REJECTIONS = 200
_PROGRESS_EVERY = 10_000


def shard_path(split_dir: str, index: int, num_shards: int) -> str:
    return os.path.join(split_dir, f"data_tfrecord-{index:05d}-of-{num_shards:05d}.gz")


class _ShardedWriter:
    """Writes records round-robin into `num_shards` gzipped TFRecord files."""

    def __init__(self, split_dir: str, num_shards: int):
        tf.io.gfile.makedirs(split_dir)
        self._writers = [
            tf.io.TFRecordWriter(shard_path(split_dir, i, num_shards), options="GZIP")
            for i in range(num_shards)
        ]
        self.count = 0

    def write(self, serialized: bytes) -> None:
        self._writers[self.count % len(self._writers)].write(serialized)
        self.count += 1

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


def _read_round_robin(split_dir: str, num_shards: int) -> Iterator[bytes]:
    """Reads back a split written by _ShardedWriter, in the order it was written.

    Record j sits in shard j % num_shards, so the first exhausted shard marks the end.
    """
    iterators = [
        iter(tf.data.TFRecordDataset(shard_path(split_dir, i, num_shards), "GZIP")
             .as_numpy_iterator())
        for i in range(num_shards)
    ]
    while True:
        for it in iterators:
            item = next(it, None)
            if item is None:
                return
            yield item


class _Rejections:
    def __init__(self):
        self.count: collections.Counter = collections.Counter()
        self.listed: list[dict[str, str]] = []

    def add(self, part: str, error: Exception) -> None:
        self.count[part] += 1
        logging.warning("Rejected record: %s", error)
        if len(self.listed) < MAX_LISTED_REJECTIONS:
            self.listed.append({"part": part, "error": str(error)})


def _convert(
    source: DataSource, part: str, writer: _ShardedWriter, rejections: _Rejections,
) -> Iterator[tuple[str, int]]:
    """Converts `part`, writing valid records; yields (filename, label) of each one written."""
    class_names = source.class_names()
    start = time.time()
    seen = 0
    for seen, raw in enumerate(source.records(part), start=1):
        try:
            example = records_lib.to_example(raw, len(class_names), class_names)
        except records_lib.RecordError as e:
            rejections.add(part, e)
            continue
        # deterministic=True: map fields otherwise serialize in arbitrary order.
        writer.write(example.SerializeToString(deterministic=True))
        yield raw.filename, raw.label
        if seen % _PROGRESS_EVERY == 0:
            logging.info("S4LExampleGen: %s: %d records read (%.0f/s)",
                         part, seen, seen / max(time.time() - start, 1e-6))
    logging.info("S4LExampleGen: %s: %d records read, %d written, %d rejected",
                 part, seen, writer.count, rejections.count[part])


def _filter(src_dir: str, dst_dir: str, num_shards: int, keep: Iterable[bool]) -> int:
    writer = _ShardedWriter(dst_dir, num_shards)
    for serialized, wanted in zip(_read_round_robin(src_dir, num_shards), keep, strict=True):
        if wanted:
            writer.write(serialized)
    writer.close()
    return writer.count


def build_splits(source: DataSource, output_uri: str, options: SplitOptions) -> dict:
    """Writes Split-<name>/ directories under `output_uri` and returns the split statistics.

    Raises:
      splits_lib.SplitError: the fraction is invalid, the label map matches nothing, or a
        split would be empty.
    """
    label_map = (splits_lib.load_label_map(options.label_map_path)
                 if options.label_map_path else None)
    known_names = source.train_names() if label_map is not None else None
    if known_names is not None:  # A map of another data set fails now, not after pass 1.
        splits_lib.check_label_map_matches(options.label_map_path, label_map, known_names)
    elif label_map is not None:  # Names known only by converting: compare their shape.
        splits_lib.check_label_map_looks_like(options.label_map_path, label_map,
                                              source.sample_train_names())
    class_names = source.class_names()
    num_shards = options.num_shards
    split_dir = {name: os.path.join(output_uri, f"Split-{name}") for name in features.SPLITS}
    rejections = _Rejections()

    # Pass 1: every valid training image goes to `unlabelled`; remember (filename, label).
    writer = _ShardedWriter(split_dir[features.UNLABELLED_SPLIT], num_shards)
    train_refs = list(_convert(source, TRAIN, writer, rejections))
    writer.close()

    held_out: set[int] = set()
    if options.validation_images:
        # Never an image the label map names: the map says exactly which are labelled.
        in_map = {i for i, (name, _) in enumerate(train_refs)
                  if label_map is not None and name in label_map}
        held_out = _hold_out(train_refs, options, len(class_names), exclude=in_map)
    missing_names: list[str] = []
    if label_map is not None:
        chosen = [name in label_map and i not in held_out
                  for i, (name, _) in enumerate(train_refs)]
        missing_names = splits_lib.check_label_map_matches(
            options.label_map_path, label_map, (name for name, _ in train_refs))
        per_class_target = None
    else:
        sampler = splits_lib.BalancedSampler(options.seed)
        for position, (name, label) in enumerate(train_refs):
            sampler.add(position, name, label)
        # A fraction of all training images, held-out ones included: tuning runs then train
        # on as many labelled images as the final runs.
        selected = sampler.select(options.labelled_fraction, len(class_names),
                                  exclude=held_out)
        chosen = [position in selected for position in range(len(train_refs))]
        per_class_target = splits_lib.per_class_target(
            options.labelled_fraction, len(train_refs), len(class_names))

    # Pass 2: the labelled subset, read back from the converted records.
    labelled_count = _filter(split_dir[features.UNLABELLED_SPLIT],
                             split_dir[features.LABELLED_SPLIT], num_shards, chosen)
    if labelled_count == 0:
        raise splits_lib.SplitError(
            f"the labelled split is empty ({len(train_refs)} valid training images)")
    in_unlabelled = [not (options.exclude_labelled and c) and i not in held_out
                     for i, c in enumerate(chosen)]
    if held_out:
        _filter(split_dir[features.UNLABELLED_SPLIT], split_dir[features.EVAL_SPLIT],
                num_shards, (i in held_out for i in range(len(train_refs))))
    if not all(in_unlabelled):
        kept_dir = split_dir[features.UNLABELLED_SPLIT] + ".tmp"
        tf.io.gfile.rename(split_dir[features.UNLABELLED_SPLIT], kept_dir)
        _filter(kept_dir, split_dir[features.UNLABELLED_SPLIT], num_shards, in_unlabelled)
        tf.io.gfile.rmtree(kept_dir)

    if held_out:
        eval_refs = [ref for i, ref in enumerate(train_refs) if i in held_out]
    else:
        writer = _ShardedWriter(split_dir[features.EVAL_SPLIT], num_shards)
        eval_refs = list(_convert(source, TEST, writer, rejections))
        writer.close()

    name_counts = collections.Counter(name for name, _ in train_refs)
    duplicates = sorted(name for name, n in name_counts.items() if n > 1)
    if duplicates:
        # Label maps select by file name, so a duplicated name is ambiguous: say so.
        logging.warning("S4LExampleGen: %d training file names occur more than once, e.g. %s",
                        len(duplicates), duplicates[:5])
    labelled_labels = [label for (_, label), c in zip(train_refs, chosen, strict=True) if c]
    unlabelled_labels = [label for (_, label), keep in zip(train_refs, in_unlabelled,
                                                           strict=True) if keep]
    stats = {
        "source": source.name,
        "classes": class_names,
        "selection": {
            "method": "label_map" if label_map is not None else "class_balanced_sample",
            "labelled_fraction": None if label_map is not None else options.labelled_fraction,
            "label_map_path": options.label_map_path or None,
            "label_map_names_not_found": len(missing_names),
            "label_map_names_not_found_examples": missing_names[:20],
            "per_class_target": per_class_target,
            "seed": options.seed,
            "exclude_labelled_from_unlabelled": options.exclude_labelled,
            # "test": the source's test images; "validation_hold_out": training images.
            "eval_from": "validation_hold_out" if held_out else "test",
            "validation_images": len(held_out),
        },
        "splits": {
            features.LABELLED_SPLIT: _describe(labelled_labels, class_names),
            features.UNLABELLED_SPLIT: _describe(unlabelled_labels, class_names),
            features.EVAL_SPLIT: _describe([label for _, label in eval_refs], class_names),
        },
        "duplicate_filenames": {"count": len(duplicates), "examples": duplicates[:20]},
        # Hidden files and folders (dot-names, __MACOSX, lost+found, ...): never classes or
        # images, left out by rule and listed here.
        "ignored_hidden": {"count": len(source.ignored_entries()),
                           "examples": source.ignored_entries()[:20]},
        "rejected": {"count": sum(rejections.count.values()),
                     "by_part": dict(rejections.count),
                     "records": rejections.listed},
    }
    for name in (features.UNLABELLED_SPLIT, features.EVAL_SPLIT):
        if stats["splits"][name]["count"] == 0:
            raise splits_lib.SplitError(f"the {name} split is empty: every record was rejected")
    with tf.io.gfile.GFile(os.path.join(output_uri, features.SPLIT_STATS_FILE), "w") as f:
        f.write(json.dumps(stats, indent=1))
    return stats


def _hold_out(train_refs: list[tuple[str, int]], options: SplitOptions,
              num_classes: int, exclude: set[int]) -> set[int]:
    """Positions of the validation hold-out: validation_images / classes per class."""
    per_class = options.validation_images // num_classes
    if per_class < 1 or options.validation_images >= len(train_refs):
        raise splits_lib.SplitError(
            f"validation_images={options.validation_images} must be at least one per class "
            f"({num_classes}) and fewer than the {len(train_refs)} valid training images")
    sampler = splits_lib.BalancedSampler(options.seed, salt="validation:")
    for position, (name, label) in enumerate(train_refs):
        sampler.add(position, name, label)
    return sampler.select_per_class(per_class, exclude)


def _describe(labels: list[int], class_names: list[str]) -> dict:
    counts = collections.Counter(labels)
    return {"count": len(labels),
            "per_class": {class_names[i]: counts.get(i, 0) for i in range(len(class_names))}}
