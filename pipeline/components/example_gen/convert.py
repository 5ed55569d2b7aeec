"""The work of S4LExampleGen's two Beam passes, one work unit at a time.

Plain functions that Beam maps over the units (and that run in a loop without Beam):
  * `convert_unit` (pass 1) reads one unit of a source, validates and converts each record,
    writes the valid ones, in order, to the unit's own shard, and last a summary next to the
    splits: the ordinal, file name and label of every record written, and the rejections.
  * `route_unit` (pass 2) reads one training shard back and writes the labelled (and
    validation hold-out) records that the driver chose from the summaries into the same-named
    shard of those splits, and rewrites the unlabelled shard where records must leave it.
A unit's shard holds exactly its records in source order, so the output is the same whichever
worker converts which unit, and however many workers there are.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import os
import struct
import time
from collections.abc import Iterator

import google_crc32c
import tensorflow as tf
from absl import logging
from apache_beam.metrics import Metrics

from pipeline.components.example_gen import records as records_lib
from pipeline.components.example_gen.sources import DataSource, Unit

MAX_LISTED_REJECTIONS = 200
_NAMESPACE = "S4LExampleGen"
# GZIP-framed shards (what TFX's ExampleGen writes and every reader expects) in stored blocks:
# each record is an encoded PNG or JPEG that zlib shrinks by about 1 %, while compressing it
# took about half of the conversion time (docs/benchmarks.md, `example_gen_throughput`).
_SHARD_OPTIONS = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=0)


def shard_path(split_dir: str, index: int, num_shards: int) -> str:
    return os.path.join(split_dir, f"data_tfrecord-{index:05d}-of-{num_shards:05d}.gz")


def summary_path(work_dir: str, part: str, index: int) -> str:
    return os.path.join(work_dir, f"{part}-{index:05d}.json")


@dataclasses.dataclass(frozen=True)
class ConvertJob:
    """Pass 1's element: a unit and the split folder its shard goes to."""

    unit: Unit
    split_dir: str


def convert_unit(job: ConvertJob, source: DataSource, work_dir: str) -> None:
    """Converts `job.unit` into its shard and writes its summary (last, so a summary means a
    finished shard)."""
    unit = job.unit
    class_names = source.class_names()
    ordinals, filenames, labels, listed = [], [], [], []
    read = rejected = 0
    start = time.time()
    tf.io.gfile.makedirs(job.split_dir)
    with tf.io.TFRecordWriter(shard_path(job.split_dir, unit.index, unit.count),
                              _SHARD_OPTIONS) as writer:
        for raw in source.unit_records(unit):
            read += 1
            try:
                example = records_lib.to_example(raw, len(class_names), class_names)
            except records_lib.RecordError as e:
                rejected += 1
                Metrics.counter(_NAMESPACE, f"{unit.part}_rejected").inc()
                logging.warning("Rejected record: %s", e)
                if len(listed) < MAX_LISTED_REJECTIONS:
                    listed.append({"part": unit.part, "error": str(e)})
                continue
            # deterministic=True: map fields otherwise serialize in arbitrary order.
            writer.write(example.SerializeToString(deterministic=True))
            ordinals.append(raw.ordinal)
            filenames.append(raw.filename)
            labels.append(raw.label)
    Metrics.counter(_NAMESPACE, f"{unit.part}_written").inc(len(ordinals))
    logging.info("S4LExampleGen: %s unit %d/%d: %d records read, %d written, %d rejected "
                 "(%.0f/s)", unit.part, unit.index + 1, unit.count, read, len(ordinals),
                 rejected, read / max(time.time() - start, 1e-6))
    _write_json(summary_path(work_dir, unit.part, unit.index), {
        "part": unit.part, "index": unit.index, "started": start, "finished": time.time(),
        "read": read, "ordinals": ordinals,
        "filenames": filenames, "labels": labels,
        "rejected": {"count": rejected, "listed": listed}})


def read_summary(work_dir: str, part: str, index: int) -> dict:
    with tf.io.gfile.GFile(summary_path(work_dir, part, index)) as f:
        return json.load(f)


@dataclasses.dataclass(frozen=True)
class Routing:
    """Pass 2's element: where the records of one training shard go, by their place in it.

    Attributes:
      index, count: The shard (its unit's index and the part's unit count).
      size: Records the shard holds (a check that it is the shard pass 1 wrote).
      labelled: Places of the labelled records.
      held_out: Places of the validation hold-out records (the eval split).
      dropped: Places of the records that leave the unlabelled split.
      hold_out: Whether the eval split is a hold-out (then every shard writes one).
    """

    index: int
    count: int
    size: int
    labelled: tuple[int, ...]
    held_out: tuple[int, ...]
    dropped: tuple[int, ...]
    hold_out: bool


def route_unit(routing: Routing, split_dirs: dict[str, str]) -> None:
    """Writes one training shard's labelled (and hold-out) records; rewrites its unlabelled
    shard without the dropped ones. `split_dirs` maps "labelled", "unlabelled" and "eval" to
    their folders."""
    source = shard_path(split_dirs["unlabelled"], routing.index, routing.count)
    targets = {"labelled": set(routing.labelled)}
    if routing.hold_out:
        targets["eval"] = set(routing.held_out)
    kept_path = source + ".kept"
    if routing.dropped:
        targets["unlabelled"] = set(range(routing.size)) - set(routing.dropped)
    writers = {}
    try:
        for name in targets:
            path = kept_path if name == "unlabelled" else shard_path(
                split_dirs[name], routing.index, routing.count)
            tf.io.gfile.makedirs(os.path.dirname(path))
            writers[name] = tf.io.TFRecordWriter(path, _SHARD_OPTIONS)
        size = 0
        for place, serialized in enumerate(shard_records(source)):
            size = place + 1
            for name, places in targets.items():
                if place in places:
                    writers[name].write(serialized)
    finally:
        for writer in writers.values():
            writer.close()
    if size != routing.size:
        raise RuntimeError(f"{source} holds {size} records, pass 1 wrote {routing.size}")
    if routing.dropped:
        tf.io.gfile.rename(kept_path, source, overwrite=True)


def shard_records(path: str) -> Iterator[bytes]:
    """The serialized records of one GZIP TFRecord shard, in order.

    Read with Python's gzip and the TFRecord framing (length, masked CRC-32C of the length,
    data, masked CRC-32C of the data) rather than tf.data: pass 2 only copies records, and
    iterating a TFRecordDataset from Python cost about four times as much per record
    (docs/benchmarks.md). Both checksums are verified, as TensorFlow's reader does, and gzip
    checks the stream's CRC-32 at its end.

    Raises:
      RuntimeError: the shard ends inside a record, or a record fails its checksum.
    """
    with tf.io.gfile.GFile(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as stream:
        for place in itertools.count():
            header = stream.read(12)
            if not header:
                return
            if len(header) != 12 or _masked_crc(header[:8]) != header[8:]:
                raise RuntimeError(f"{path}: record {place} has a damaged or cut header")
            (length,) = struct.unpack("<Q", header[:8])
            data = stream.read(length)
            if len(data) != length or _masked_crc(data) != stream.read(4):
                raise RuntimeError(f"{path}: record {place} is cut or fails its checksum")
            yield data


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant, little-endian."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _write_json(path: str, value: dict) -> None:
    """Writes `value` to a temporary name, then renames: readers see all of it or nothing."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(json.dumps(value))
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
