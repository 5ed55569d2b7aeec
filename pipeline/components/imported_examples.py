"""Already-split examples registered in place with `tfx.dsl.Importer` (no second copy).

`--source examples --data_path DIR` skips S4LExampleGen: DIR must hold the three S4L splits in
the layout of a TFX Examples artifact, `DIR/Split-labelled/`, `DIR/Split-unlabelled/` and
`DIR/Split-eval/` (TFRecord files of tf.Examples with this project's keys, labels 0-based):
for example an earlier run's S4LExampleGen output, or ImageNet shards converted once and kept
(at ImageNet scale, register pre-split TFRecords instead of copying 1.28M images per
pipeline). Its `split_stats.json`, when present, gives the class names and
split sizes to the summary, the report and the model card.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from modules import features

if TYPE_CHECKING:
    import tensorflow as tf
    from tfx import v1 as tfx

NAME = "examples"
IMPORTER_ID = "ImportExamples"


class ImportedExamplesError(ValueError):
    """The directory is not a usable set of already-split examples."""


def split_files(uri: str, split: str) -> list[str]:
    import tensorflow as tf  # (Here, not at the top: --help and flag errors stay light.)

    return sorted(tf.io.gfile.glob(os.path.join(uri, f"Split-{split}", "*")))


def _first_example(path: str) -> tf.train.Example:
    import tensorflow as tf

    compression = "GZIP" if path.endswith(".gz") else ""
    try:
        for serialized in tf.data.TFRecordDataset(path, compression_type=compression).take(1):
            return tf.train.Example.FromString(serialized.numpy())
    except (tf.errors.OpError, ValueError) as e:
        raise ImportedExamplesError(f"{path}: not a TFRecord file of tf.Examples ({e})") from None
    raise ImportedExamplesError(f"{path}: holds no records")


class ImportedExamples:
    """An already-split examples directory, checked before any work starts (one kind of
    `pipeline.components.source.Source`)."""

    name = NAME
    already_split = True
    dataset = ""  # what split_stats.json says it was converted from, else --dataset

    @classmethod
    def remote_num_classes(cls, num_classes: int) -> int:
        """The class count when the directory is on Cloud Storage (not read from here).

        Raises:
          ImportedExamplesError: `--num_classes` not given.
        """
        if not num_classes:
            raise ImportedExamplesError(
                "--num_classes is required for --source examples on Cloud Storage (its "
                f"{features.SPLIT_STATS_FILE} is not read from this machine)")
        return num_classes

    @classmethod
    def recognises(cls, directory: str) -> bool:
        """Whether the local `directory` holds Split-<name>/ folders (`--source` inferred)."""
        return any(os.path.isdir(os.path.join(directory, f"Split-{split}"))
                   for split in features.SPLITS)

    def __init__(self, uri: str, num_classes: int = 0):
        if not uri:
            raise ImportedExamplesError("--source examples needs --data_path DIR (with "
                                        "Split-labelled/, Split-unlabelled/, Split-eval/)")
        self.uri = uri.rstrip("/")
        self.split_stats = self._read_split_stats()
        stats_classes = (self.split_stats or {}).get("classes")
        if num_classes and stats_classes and num_classes != len(stats_classes):
            raise ImportedExamplesError(f"--num_classes {num_classes} but {self._stats_path()} "
                                        f"lists {len(stats_classes)} classes")
        self.num_classes = num_classes or len(stats_classes or [])
        if not self.num_classes:
            raise ImportedExamplesError(f"{self.uri} has no {features.SPLIT_STATS_FILE}: give "
                                        "--num_classes")
        self.files = {split: split_files(self.uri, split) for split in features.SPLITS}
        missing = [split for split, files in self.files.items() if not files]
        if missing:
            raise ImportedExamplesError(
                f"{self.uri}: no files in " + ", ".join(f"Split-{s}/" for s in missing)
                + "; expected the layout of a TFX Examples artifact with splits "
                + ", ".join(features.SPLITS))
        for split, files in self.files.items():
            self._check_record(files[0], labelled=split != features.UNLABELLED_SPLIT)

    def _stats_path(self) -> str:
        return os.path.join(self.uri, features.SPLIT_STATS_FILE)

    def _read_split_stats(self) -> dict[str, Any] | None:
        import tensorflow as tf

        if not tf.io.gfile.exists(self._stats_path()):
            return None
        try:
            with tf.io.gfile.GFile(self._stats_path()) as f:
                return json.load(f)
        except json.JSONDecodeError as e:
            raise ImportedExamplesError(f"{self._stats_path()}: not JSON ({e})") from None

    def _check_record(self, path: str, labelled: bool) -> None:
        """The first record of a split has an image and, where labels are read, a 0-based
        label below num_classes (a 1-based slim label of the last class would not be)."""
        feature = _first_example(path).features.feature
        if not feature[features.IMAGE_KEY].bytes_list.value:
            raise ImportedExamplesError(f"{path} record 0: no {features.IMAGE_KEY}")
        if not labelled:
            return
        labels = feature[features.LABEL_KEY].int64_list.value
        if not labels:
            raise ImportedExamplesError(f"{path} record 0: no {features.LABEL_KEY}")
        if not 0 <= labels[0] < self.num_classes:
            raise ImportedExamplesError(f"{path} record 0: label {labels[0]} outside [0, "
                                        f"{self.num_classes}); labels must be 0-based")

    def class_names(self) -> list[str]:
        return list((self.split_stats or {}).get("classes")
                    or [f"class_{i}" for i in range(self.num_classes)])

    def converted_from(self) -> str | None:
        """The S4LExampleGen source the splits were converted from, when split_stats.json
        says (it picks the preset variant)."""
        return (self.split_stats or {}).get("source")

    def dataset_variant(self) -> str:
        """The preset variant of the source the splits were converted from, or ""."""
        from pipeline.components.example_gen import sources

        kinds = {kind.name: kind for kind in sources.SOURCE_TYPES}
        converted = kinds.get(self.converted_from() or "")
        return converted.dataset if converted else ""

    def labelled_fraction(self) -> float | None:
        splits = (self.split_stats or {}).get("splits", {})
        total = splits.get(features.UNLABELLED_SPLIT, {}).get("count")
        labelled = splits.get(features.LABELLED_SPLIT, {}).get("count")
        return labelled / total if total and labelled else None

    def fingerprint(self) -> str:
        """Names, sizes and modification times of every split file: changes when the data
        does, so the Importer registers a new artifact and downstream caches miss."""
        import tensorflow as tf

        digest = hashlib.sha256()
        for split in features.SPLITS:
            for path in self.files[split]:
                stat = tf.io.gfile.stat(path)
                digest.update(f"{split}/{os.path.basename(path)}:{stat.length}:"
                              f"{stat.mtime_nsec}\n".encode())
        return digest.hexdigest()[:16]


def importer(uri: str, fingerprint: str) -> tfx.dsl.Importer:
    """The Importer node: an Examples artifact at `uri` itself (nothing is copied)."""
    from tfx import v1 as tfx
    from tfx.types import artifact_utils

    return tfx.dsl.Importer(
        source_uri=uri, artifact_type=tfx.types.standard_artifacts.Examples,
        properties={"split_names": artifact_utils.encode_split_names(list(features.SPLITS))},
        # A different fingerprint is a different artifact, so changed data is not cached.
        custom_properties={"source_fingerprint": fingerprint},
        reimport=False,
    ).with_id(IMPORTER_ID)
