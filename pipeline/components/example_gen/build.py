"""Builds the `labelled`, `unlabelled` and `eval` splits from a data source in two passes.

Pass 1 converts and validates every training record, unit by unit (contiguous pieces of the
source, `sources.Unit`), and writes it to the `unlabelled` split (S4L's unlabelled stream is all
training images, labelled ones included, docs/original_s4l.md §1.5); test units go to `eval`.
Then, once every unit is done, one worker chooses the labelled subset from the units'
summaries (ordinal, file name and label of each record: no image), exactly as a single pass
over the records in source order would, and pass 2 copies the chosen records out of the
already-converted shards, so each image is decoded once. With `validation_images`, a
class-balanced hold-out of the training images becomes `eval` instead (for tuning without
reading the test set; the held-out images are in neither training split).

Both passes and the choice between them are one Beam pipeline from `make_pipeline` (the
component's, so `--beam_workers N` and Dataflow spread the units over workers), or a plain loop
in this process when it is None. Shard k of every split holds the records of training unit k
in source order: contents, order and file names do not depend on the runner or the number of
workers.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence

import tensorflow as tf
from absl import logging

from modules import features
from pipeline.components.example_gen import convert
from pipeline.components.example_gen import splits as splits_lib
from pipeline.components.example_gen.convert import MAX_LISTED_REJECTIONS
from pipeline.components.example_gen.sources import TEST, TRAIN, DataSource
from pipeline.components.example_gen.splits import SplitOptions

_WORK_DIR = ".units"  # Unit summaries, under the output; removed when the splits are done.
MakePipeline = Callable[[], "object"]  # () -> apache_beam.Pipeline


def build_splits(source: DataSource, output_uri: str, options: SplitOptions,
                 make_pipeline: MakePipeline | None = None) -> dict:
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
    split_dir = {name: os.path.join(output_uri, f"Split-{name}") for name in features.SPLITS}
    work_dir = os.path.join(output_uri, _WORK_DIR)
    train_units = source.units(TRAIN, options.num_shards)
    test_units = [] if options.validation_images else source.units(TEST, options.num_shards)
    jobs = ([convert.ConvertJob(u, split_dir[features.UNLABELLED_SPLIT]) for u in train_units]
            + [convert.ConvertJob(u, split_dir[features.EVAL_SPLIT]) for u in test_units])
    planner = _Planner(source_name=source.name, class_names=tuple(source.class_names()),
                       options=options, label_map=label_map, output_uri=output_uri,
                       train_units=len(train_units), test_units=len(test_units),
                       ignored=tuple(source.ignored_entries()))
    logging.info("S4LExampleGen: converting %d training and %d test units of %s",
                 len(train_units), len(test_units), source.name)
    convert_fn = functools.partial(convert.convert_unit, source=source, work_dir=work_dir)
    route_fn = functools.partial(convert.route_unit, split_dirs=split_dir)
    if make_pipeline is None:
        for job in jobs:
            convert_fn(job)
        for routing in planner.plan():
            route_fn(routing)
    else:
        _run_on_beam(make_pipeline, jobs, convert_fn, planner, route_fn)
    tf.io.gfile.rmtree(work_dir)
    with tf.io.gfile.GFile(os.path.join(output_uri, features.SPLIT_STATS_FILE)) as f:
        return json.load(f)


def _run_on_beam(make_pipeline: MakePipeline, jobs: Sequence[convert.ConvertJob],
                 convert_fn: Callable, planner: _Planner, route_fn: Callable) -> None:
    """Both passes as one Beam pipeline (its workers start once): convert the units; once
    every unit is done, plan on one worker; then route the training shards."""
    import apache_beam as beam

    with make_pipeline() as pipeline:
        _ = (pipeline
             | "Units" >> beam.Create(list(jobs))
             # Without a reshuffle a runner may keep every unit in Create's one bundle.
             | "SpreadUnits" >> beam.Reshuffle()
             | "Convert" >> beam.Map(convert_fn)
             | "AllConverted" >> beam.combiners.Count.Globally()
             | "Plan" >> beam.FlatMap(lambda _: planner.plan())
             | "SpreadShards" >> beam.Reshuffle()
             | "Route" >> beam.Map(route_fn))


@dataclasses.dataclass(frozen=True)
class _Planner:
    """Chooses the labelled subset (and hold-out) from the units' summaries, writes the split
    statistics and says where each training shard's records go. Holds no source, so that a
    Beam worker can run it."""

    source_name: str
    class_names: tuple[str, ...]
    options: SplitOptions
    label_map: set[str] | None
    output_uri: str
    train_units: int
    test_units: int
    ignored: tuple[str, ...]

    def plan(self) -> list[convert.Routing]:
        """The routings of the training shards, in shard order.

        Raises:
          splits_lib.SplitError: the label map matches nothing, or a split would be empty.
        """
        options, label_map, class_names = self.options, self.label_map, self.class_names
        work_dir = os.path.join(self.output_uri, _WORK_DIR)
        train = _Gathered(work_dir, TRAIN, self.train_units)
        test = _Gathered(work_dir, TEST, self.test_units)
        logging.info("S4LExampleGen: %d records read, %d written, %d rejected",
                     train.read + test.read, len(train.refs) + len(test.refs),
                     train.rejected + test.rejected)
        train_refs = train.refs
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
            # A fraction of all training images, held-out ones included: tuning runs then
            # train on as many labelled images as the final runs.
            selected = sampler.select(options.labelled_fraction, len(class_names),
                                      exclude=held_out)
            chosen = [position in selected for position in range(len(train_refs))]
            per_class_target = splits_lib.per_class_target(
                options.labelled_fraction, len(train_refs), len(class_names))
        if not any(chosen):
            raise splits_lib.SplitError(
                f"the labelled split is empty ({len(train_refs)} valid training images)")
        in_unlabelled = [not (options.exclude_labelled and c) and i not in held_out
                         for i, c in enumerate(chosen)]
        eval_labels = ([label for i, (_, label) in enumerate(train_refs) if i in held_out]
                       if held_out else [label for _, label in test.refs])
        name_counts = collections.Counter(name for name, _ in train_refs)
        duplicates = sorted(name for name, n in name_counts.items() if n > 1)
        if duplicates:
            # Label maps select by file name, so a duplicated name is ambiguous: say so.
            logging.warning("S4LExampleGen: %d training file names occur more than once, "
                            "e.g. %s", len(duplicates), duplicates[:5])
        labels = [label for _, label in train_refs]
        stats = {
            "source": self.source_name,
            "classes": list(class_names),
            "selection": {
                "method": "label_map" if label_map is not None else "class_balanced_sample",
                "labelled_fraction": (None if label_map is not None
                                      else options.labelled_fraction),
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
                features.LABELLED_SPLIT: _describe(
                    [y for y, c in zip(labels, chosen, strict=True) if c], class_names),
                features.UNLABELLED_SPLIT: _describe(
                    [y for y, keep in zip(labels, in_unlabelled, strict=True) if keep],
                    class_names),
                features.EVAL_SPLIT: _describe(eval_labels, class_names),
            },
            "duplicate_filenames": {"count": len(duplicates), "examples": duplicates[:20]},
            # Hidden files and folders (dot-names, __MACOSX, lost+found, ...): never classes
            # or images, left out by rule and listed here.
            "ignored_hidden": {"count": len(self.ignored), "examples": list(self.ignored[:20])},
            "rejected": {"count": train.rejected + test.rejected,
                         "by_part": {part: n for part, n in ((TRAIN, train.rejected),
                                                             (TEST, test.rejected)) if n},
                         "records": (train.rejections + test.rejections)[
                             :MAX_LISTED_REJECTIONS]},
            "units": {TRAIN: self.train_units, TEST: self.test_units},
            # From the first unit's start to the last one's end, worker start-up excluded.
            "conversion": _rate(train.read + test.read, train.spans + test.spans),
        }
        for name in (features.UNLABELLED_SPLIT, features.EVAL_SPLIT):
            if stats["splits"][name]["count"] == 0:
                raise splits_lib.SplitError(
                    f"the {name} split is empty: every record was rejected")
        with tf.io.gfile.GFile(os.path.join(self.output_uri, features.SPLIT_STATS_FILE),
                               "w") as f:
            f.write(json.dumps(stats, indent=1))
        return train.routings(chosen, held_out, in_unlabelled)


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


def _rate(records: int, spans: list[tuple[float, float]]) -> dict:
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return {"seconds": round(seconds, 2),
            "records_per_s": round(records / seconds, 1) if seconds > 0 else None}


def _describe(labels: list[int], class_names: list[str]) -> dict:
    counts = collections.Counter(labels)
    return {"count": len(labels),
            "per_class": {class_names[i]: counts.get(i, 0) for i in range(len(class_names))}}


class _Gathered:
    """The summaries of one part's converted units, in source order."""

    def __init__(self, work_dir: str, part: str, count: int):
        self.refs: list[tuple[str, int]] = []  # (file name, label) of each record written
        self.places: list[tuple[int, int]] = []  # (unit index, place in its shard)
        self.sizes: list[int] = []
        self.spans: list[tuple[float, float]] = []  # (start, end) of each unit, epoch seconds
        self.rejections: list[dict[str, str]] = []
        self.read = self.rejected = 0
        self.count = count
        last = None
        for index in range(count):
            summary = convert.read_summary(work_dir, part, index)
            ordinals = summary["ordinals"]
            if ordinals and last is not None and ordinals[0] <= last:
                raise RuntimeError(f"unit {index} of {part} is out of source order")
            last = ordinals[-1] if ordinals else last
            self.refs.extend(zip(summary["filenames"], summary["labels"], strict=True))
            self.places.extend((index, place) for place in range(len(ordinals)))
            self.sizes.append(len(ordinals))
            self.spans.append((summary["started"], summary["finished"]))
            self.rejections.extend(summary["rejected"]["listed"])
            self.read += summary["read"]
            self.rejected += summary["rejected"]["count"]

    def routings(self, chosen: list[bool], held_out: set[int],
                 in_unlabelled: list[bool]) -> list[convert.Routing]:
        """Where each shard's records go, from per-position choices."""
        labelled = [[] for _ in range(self.count)]
        hold = [[] for _ in range(self.count)]
        dropped = [[] for _ in range(self.count)]
        for position, (unit, place) in enumerate(self.places):
            if chosen[position]:
                labelled[unit].append(place)
            if position in held_out:
                hold[unit].append(place)
            if not in_unlabelled[position]:
                dropped[unit].append(place)
        return [convert.Routing(index=i, count=self.count, size=self.sizes[i],
                                labelled=tuple(labelled[i]), held_out=tuple(hold[i]),
                                dropped=tuple(dropped[i]), hold_out=bool(held_out))
                for i in range(self.count)]
