"""Readers that stream raw records out of the supported data sources.

Every reader yields `RawRecord`s one at a time, so memory does not grow with the data set.
Each part (train, test) is cut into `Unit`s, contiguous runs of records that workers convert
independently (S4LExampleGen's Beam passes). Sources:
  * `fashion_mnist`: the IDX files (gzipped or not) of Fashion-MNIST, e.g. Debian's
    dataset-fashion-mnist in /usr/share/datasets/fashion-mnist.
  * `image_folder`: `<root>/train/<class>/<image>` and `<root>/test/<class>/<image>`.
  * `imagenet_tfrecords`: slim-built ImageNet shards (`train-*`, `validation-*`) or the
    tensor2tensor names S4L used (`image_imagenet-train-*`, `image_imagenet-dev-*`), with
    1-based labels that are shifted to 0-based here, once (docs/original_s4l.md §1.2).
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import os
import stat
import struct
from collections.abc import Iterator

import numpy as np
from PIL import Image

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)
TRAIN, TEST = "train", "test"
# Folders that operating systems, archivers and notebooks create next to the data: never
# classes or images. Every name starting with "." is hidden too (.DS_Store, .ipynb_checkpoints).
SYSTEM_NAMES = frozenset({"__MACOSX", "lost+found", "$RECYCLE.BIN", "System Volume Information",
                          "Thumbs.db", "desktop.ini", "__pycache__"})


def is_hidden(name: str) -> bool:
    """True for entries an image folder ignores by rule (dot-names and SYSTEM_NAMES)."""
    return name.startswith(".") or name in SYSTEM_NAMES


class SourceError(ValueError):
    """A data source that cannot be read at all (missing files, wrong layout)."""


@dataclasses.dataclass(frozen=True)
class RawRecord:
    """One image as read from a source, before validation.

    Attributes:
      encoded: The image file bytes, or None where the source record has none.
      label: 0-based class id, or None where the source record has none.
      filename: Base name that identifies the image (label maps match on it).
      origin: Where the record came from, e.g. "train-00001-of-01024 record 17".
      error: Why the source could not read it, or "".
    """

    encoded: bytes | None
    label: int | None
    filename: str
    origin: str
    # Why the source could not read the record at all (then `encoded` is None), e.g. a
    # broken symbolic link; validation rejects it with this reason.
    error: str = ""
    # The record's place in its part: unique, and increasing in the order `records` yields.
    ordinal: int = 0


# Records per work unit at most, where a source can cut its parts anywhere (IDX files, image
# folders): enough units that many workers share a large data set.
MAX_RECORDS_PER_UNIT = 16_384


@dataclasses.dataclass(frozen=True)
class Unit:
    """A contiguous piece of one part of a source, converted by one worker into one output
    shard. Units cover their part in record order: unit i's ordinals precede unit i+1's.

    Attributes:
      part: TRAIN or TEST.
      index: The unit's number within its part, from 0.
      count: How many units the part has.
      span: What the source reads: a record range, a list of files or a shard path.
    """

    part: str
    index: int
    count: int
    span: tuple


def unit_bounds(size: int, min_units: int) -> list[tuple[int, int]]:
    """[start, stop) of contiguous, near-equal units over `size` records: at least
    `min_units` of them, at most MAX_RECORDS_PER_UNIT records each (some may be empty when
    the records are fewer than the units)."""
    count = max(min_units, -(-size // MAX_RECORDS_PER_UNIT), 1)
    cuts = [size * i // count for i in range(count + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _cut(part: str, items: list, min_units: int) -> list[Unit]:
    bounds = unit_bounds(len(items), min_units)
    return [Unit(part, i, len(bounds), tuple(items[start:stop]))
            for i, (start, stop) in enumerate(bounds)]


class DataSource:
    """A data set with a `train` and a `test` part and a fixed class list, which
    S4LExampleGen converts and splits (one kind of `pipeline.components.source.Source`)."""

    name = "abstract"
    already_split = False
    # The preset variant that fits this kind of data (`--dataset` overrides).
    dataset = ""

    @classmethod
    def remote_num_classes(cls, num_classes: int) -> int:
        """The class count of data this machine cannot open (on Cloud Storage), from
        `--num_classes` (0: not given) or what the kind fixes.

        Raises:
          SourceError: the count is needed and not given.
        """
        if not num_classes:
            raise SourceError(f"--num_classes is required for --source {cls.name} when only "
                              "the remote workers can read the data")
        return num_classes

    @classmethod
    def recognises(cls, directory: str) -> bool:
        """Whether the local `directory` has this kind's layout (`--source` inferred)."""
        return False

    def dataset_variant(self) -> str:
        return self.dataset

    def labelled_fraction(self) -> float | None:
        """None: the labelled fraction is a setting (a converter splits the data itself)."""
        return None

    def class_names(self) -> list[str]:
        raise NotImplementedError

    def units(self, part: str, min_units: int = 1) -> list[Unit]:
        """The work units of `part`, in record order (at least `min_units` where the source
        can cut its part anywhere)."""
        raise NotImplementedError

    def unit_records(self, unit: Unit) -> Iterator[RawRecord]:
        """The records of one unit, in order, each with its ordinal."""
        raise NotImplementedError

    def records(self, part: str) -> Iterator[RawRecord]:
        """Every record of `part`, in order."""
        for unit in self.units(part):
            yield from self.unit_records(unit)

    def ignored_entries(self) -> list[str]:
        """Entries left out by rule (hidden files and folders), for the split statistics."""
        return []

    def train_names(self) -> list[str] | None:
        """The training images' file names where they are known without converting the data
        (a label map is checked against them first); None where only a full pass tells."""
        return None

    def sample_train_names(self) -> list[str]:
        """Some training file names, read cheaply, where `train_names` is None: a label map
        whose names look like none of them fails before the conversion."""
        return []

    def fingerprint(self) -> str:
        """Size, inode and nanosecond mtime of every source file: changes when the data
        changes, also for a file replaced within the same second at the same size."""
        parts = []
        for path in sorted(self._files()):
            st = os.stat(path)
            parts.append(f"{path}:{st.st_size}:{st.st_ino}:{st.st_mtime_ns}")
        return str(abs(hash_text("\n".join(parts))))

    def _files(self) -> list[str]:
        raise NotImplementedError


def hash_text(text: str) -> int:
    """A stable 63-bit hash (Python's hash() is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


# ---------------------------------------------------------------------------- Fashion-MNIST


def _open_maybe_gz(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _find_idx(directory: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise SourceError(
        f"Fashion-MNIST file {stem}[.gz] not found in {directory!r}; install Debian's "
        "dataset-fashion-mnist (./setup.sh does) or pass --data_path"
    )


def _idx_header(stream, path: str, magic: int, ndim: int) -> tuple[int, ...]:
    header = stream.read(4 + 4 * ndim)
    if len(header) != 4 + 4 * ndim:
        raise SourceError(f"{path}: truncated IDX header")
    got_magic, *dims = struct.unpack(">I" + "I" * ndim, header)
    if got_magic != magic:
        raise SourceError(f"{path}: bad IDX magic number {got_magic:#x}, expected {magic:#x}")
    return tuple(dims)


class FashionMnistSource(DataSource):
    """Fashion-MNIST from its IDX files; images are re-encoded as 28x28 grayscale PNG."""

    name = "fashion_mnist"
    dataset = "fashion_mnist"
    _STEMS = {TRAIN: "train", TEST: "t10k"}

    @classmethod
    def remote_num_classes(cls, num_classes: int) -> int:
        return len(FASHION_MNIST_CLASSES)

    @classmethod
    def recognises(cls, directory: str) -> bool:
        return any(os.path.exists(os.path.join(directory, f"train-images-idx3-ubyte{ext}"))
                   for ext in ("", ".gz"))

    def __init__(self, directory: str = FASHION_MNIST_DIR):
        self.directory = directory or FASHION_MNIST_DIR
        for part in self._STEMS:
            self._paths(part)  # Fail early, naming the missing file.

    def _paths(self, part: str) -> tuple[str, str]:
        stem = self._STEMS[part]
        return (
            _find_idx(self.directory, f"{stem}-images-idx3-ubyte"),
            _find_idx(self.directory, f"{stem}-labels-idx1-ubyte"),
        )

    def _files(self) -> list[str]:
        return [p for part in self._STEMS for p in self._paths(part)]

    def class_names(self) -> list[str]:
        return list(FASHION_MNIST_CLASSES)

    def train_names(self) -> list[str]:
        image_path, _ = self._paths(TRAIN)
        with _open_maybe_gz(image_path) as images:
            count, _, _ = _idx_header(images, image_path, 0x803, 3)
        return [f"{self._STEMS[TRAIN]}_{index:05d}.png" for index in range(count)]

    def units(self, part: str, min_units: int = 1) -> list[Unit]:
        image_path, _ = self._paths(part)
        with _open_maybe_gz(image_path) as images:
            count, _, _ = _idx_header(images, image_path, 0x803, 3)
        bounds = unit_bounds(count, min_units)
        return [Unit(part, i, len(bounds), span) for i, span in enumerate(bounds)]

    def unit_records(self, unit: Unit) -> Iterator[RawRecord]:
        start, stop = unit.span
        image_path, label_path = self._paths(unit.part)
        with _open_maybe_gz(image_path) as images, _open_maybe_gz(label_path) as labels:
            count, rows, cols = _idx_header(images, image_path, 0x803, 3)
            (label_count,) = _idx_header(labels, label_path, 0x801, 1)
            if count != label_count:
                raise SourceError(
                    f"{image_path} holds {count} images but {label_path} {label_count} labels"
                )
            size = rows * cols
            _skip(images, start * size)
            _skip(labels, start)
            stem = self._STEMS[unit.part]
            for index in range(start, min(stop, count)):
                pixels = images.read(size)
                label = labels.read(1)
                origin = f"{os.path.basename(image_path)} record {index}"
                if len(pixels) != size or len(label) != 1:
                    raise SourceError(f"{origin}: file ends early (header says {count} records)")
                array = np.frombuffer(pixels, dtype=np.uint8).reshape(rows, cols)
                buffer = io.BytesIO()
                Image.fromarray(array, mode="L").save(buffer, format="PNG")
                yield RawRecord(buffer.getvalue(), label[0], f"{stem}_{index:05d}.png", origin,
                                ordinal=index)


def _skip(stream, size: int) -> None:
    """Reads past `size` bytes (a gzip stream cannot seek without decompressing)."""
    while size > 0:
        chunk = stream.read(min(size, 1 << 22))
        if not chunk:
            return
        size -= len(chunk)


# ---------------------------------------------------------------------------- image folder


class ImageFolderSource(DataSource):
    """`<root>/{train,test}/<class name>/<image>`; classes are the sorted train sub-folders."""

    name = "image_folder"
    dataset = "fashion_mnist"  # the small-image recipe

    @classmethod
    def recognises(cls, directory: str) -> bool:
        return all(os.path.isdir(os.path.join(directory, part)) for part in (TRAIN, TEST))

    def __init__(self, root: str):
        if not root or not os.path.isdir(root):
            raise SourceError(f"image folder {root!r} does not exist")
        self.root = root
        for part in (TRAIN, TEST):
            if not os.path.isdir(os.path.join(root, part)):
                raise SourceError(
                    f"image folder {root!r} has no {part!r} sub-folder; expected "
                    f"{root}/train/<class>/<image> and {root}/test/<class>/<image>"
                )
        self._ignored: list[str] = []
        self._classes = self._class_folders(TRAIN)
        if not self._classes:
            raise SourceError(f"{root}/train has no class sub-folders")
        empty = [c for c in self._classes
                 if not any(not is_hidden(e) for e in os.listdir(os.path.join(root, TRAIN, c)))]
        if empty:
            raise SourceError(f"{root}/train has class folders without images: {empty[:10]}")
        test_classes = set(self._class_folders(TEST))
        unknown = sorted(test_classes - set(self._classes))
        if unknown:
            raise SourceError(f"{root}/test has classes that train lacks: {unknown[:10]}")
        untested = sorted(set(self._classes) - test_classes)
        if untested:
            raise SourceError(f"{root}/test has no folder for classes of train: {untested[:10]}"
                              " (the evaluation would not cover them)")

    def _class_folders(self, part: str) -> list[str]:
        """The sorted class folders of `part`; hidden entries are ignored and remembered.

        Raises:
          SourceError: a file (not a hidden one) sits directly in `part`, outside every
            class folder: it has no label, and dropping it unseen would lose an image.
        """
        classes, stray = [], []
        for name in sorted(os.listdir(os.path.join(self.root, part))):
            if is_hidden(name):
                self._ignore(os.path.join(part, name))
            elif os.path.isdir(os.path.join(self.root, part, name)):
                classes.append(name)
            else:
                stray.append(name)
        if stray:
            raise SourceError(
                f"{self.root}/{part} has {len(stray)} file(s) outside the class folders, e.g. "
                f"{stray[:5]}: images must be in {part}/<class>/; move or delete them")
        return classes

    def _ignore(self, rel: str) -> None:
        if rel not in self._ignored:
            self._ignored.append(rel)

    def class_names(self) -> list[str]:
        return list(self._classes)

    def ignored_entries(self) -> list[str]:
        """Hidden files and folders left out by rule, relative to the root."""
        return list(self._ignored)

    def train_names(self) -> list[str]:
        return [os.path.basename(path) for path, _ in self._listing(TRAIN)]

    def _listing(self, part: str) -> Iterator[tuple[str, int]]:
        """Every non-hidden entry of the class folders, image or not: what Pillow cannot
        decode is rejected by name later, never skipped unseen."""
        for label, name in enumerate(self._classes):
            folder = os.path.join(self.root, part, name)
            if not os.path.isdir(folder):
                continue
            for entry in sorted(os.listdir(folder)):
                if is_hidden(entry):
                    self._ignore(os.path.join(part, name, entry))
                else:
                    yield os.path.join(folder, entry), label

    def _files(self) -> list[str]:
        return [path for part in (TRAIN, TEST) for path, _ in self._listing(part)
                if os.path.isfile(path)]

    def units(self, part: str, min_units: int = 1) -> list[Unit]:
        """Units of (ordinal, path, label): the folder is listed once, here."""
        listing = [(ordinal, path, label)
                   for ordinal, (path, label) in enumerate(self._listing(part))]
        return _cut(part, listing, min_units)

    def unit_records(self, unit: Unit) -> Iterator[RawRecord]:
        for ordinal, path, label in unit.span:
            yield self._read(path, label, ordinal)

    def _read(self, path: str, label: int, ordinal: int) -> RawRecord:
        prefix = os.path.join(self.root, "")  # The listing's paths start with it (cheaper).
        rel = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, self.root)
        name = os.path.basename(path)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            return RawRecord(None, label, shown, repr(rel)[1:-1],
                             "file name is not valid UTF-8", ordinal)
        problem = _not_a_readable_file(path)
        if problem:
            return RawRecord(None, label, name, rel, problem, ordinal)
        try:
            with open(path, "rb") as f:
                encoded = f.read()
        except OSError as e:
            return RawRecord(None, label, name, rel, f"cannot be read ({e.strerror or e})",
                             ordinal)
        return RawRecord(encoded, label, name, rel, ordinal=ordinal)


def _not_a_readable_file(path: str) -> str:
    """Why `path` is no regular file to read, or "". Never opens it (a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode  # follows symbolic links
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "vanished while listed"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        return f"not a regular file (a {kind})"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return ""


# ---------------------------------------------------------------------------- slim TFRecords

_TRAIN_PATTERNS = ("train-*-of-*", "image_imagenet-train-*-of-*")
_TEST_PATTERNS = ("validation-*-of-*", "image_imagenet-dev-*-of-*")


class SlimTFRecordSource(DataSource):
    """ImageNet-format TFRecords; `label_offset` (1 for slim) is subtracted at ingestion."""

    name = "imagenet_tfrecords"
    dataset = "imagenet"

    @classmethod
    def remote_num_classes(cls, num_classes: int) -> int:
        return num_classes or 1000

    @classmethod
    def recognises(cls, directory: str) -> bool:
        return any(glob.glob(os.path.join(directory, pattern)) for pattern in _TRAIN_PATTERNS)

    def __init__(self, directory: str, num_classes: int = 1000, label_offset: int = 1):
        if not directory or not os.path.isdir(directory):
            raise SourceError(f"TFRecord directory {directory!r} does not exist")
        self.directory = directory
        self.num_classes = num_classes
        self.label_offset = label_offset
        for part in (TRAIN, TEST):
            if not self._shards(part):
                patterns = _TRAIN_PATTERNS if part == TRAIN else _TEST_PATTERNS
                raise SourceError(f"no {part} shards matching {patterns} in {directory!r}")

    def _shards(self, part: str) -> list[str]:
        patterns = _TRAIN_PATTERNS if part == TRAIN else _TEST_PATTERNS
        for pattern in patterns:
            found = sorted(glob.glob(os.path.join(self.directory, pattern)))
            if found:
                return found
        return []

    def _files(self) -> list[str]:
        return self._shards(TRAIN) + self._shards(TEST)

    def class_names(self) -> list[str]:
        return [f"class_{i}" for i in range(self.num_classes)]

    def units(self, part: str, min_units: int = 1) -> list[Unit]:
        """One unit per input shard (`min_units` does not apply: shards are not cut)."""
        shards = self._shards(part)
        return [Unit(part, i, len(shards), (shard,)) for i, shard in enumerate(shards)]

    def unit_records(self, unit: Unit) -> Iterator[RawRecord]:
        import tensorflow as tf

        (shard,) = unit.span
        for record in self._shard_records(tf, shard, os.path.basename(shard)):
            # Shard-major: sorts like the records' order across the part.
            yield dataclasses.replace(record, ordinal=(unit.index << 32) + record.ordinal)

    def sample_train_names(self, per_shard: int = 20, shards: int = 5) -> list[str]:
        """The file names of the first records of the first training shards."""
        import tensorflow as tf

        names = []
        for shard in self._shards(TRAIN)[:shards]:
            base = os.path.basename(shard)
            try:
                for index, serialized in enumerate(
                        tf.data.TFRecordDataset(shard).take(per_shard).as_numpy_iterator()):
                    record = self._parse(tf, serialized, base, index)
                    if record.encoded is not None:
                        names.append(record.filename)
            except tf.errors.DataLossError:
                continue  # Named and counted by the conversion itself.
        return names

    def _shard_records(self, tf, shard: str, base: str) -> Iterator[RawRecord]:
        """The records of one shard; a corrupt stretch (bad length or checksum) rejects the
        rest of the shard by name, and the conversion goes on with the next shard."""
        records = tf.data.TFRecordDataset(shard).as_numpy_iterator()
        index = 0
        while True:
            try:
                serialized = next(records)
            except StopIteration:
                return
            except tf.errors.DataLossError as e:
                yield RawRecord(None, None, f"{base}#{index}-", f"{base} record {index} onwards",
                                "corrupt TFRecord data, the rest of the shard is rejected "
                                f"({e.message.splitlines()[0]})", index)
                return
            yield self._parse(tf, serialized, base, index)
            index += 1

    def _parse(self, tf, serialized: bytes, base: str, index: int) -> RawRecord:
        origin = f"{base} record {index}"
        try:
            example = tf.train.Example.FromString(serialized)
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError subclasses.
            return RawRecord(None, None, f"{base}#{index}", f"{origin} (not a tf.Example: {e})",
                             ordinal=index)
        feature = example.features.feature
        encoded = _first_bytes(feature, "image/encoded")
        filename = _first_bytes(feature, "image/filename")
        labels = feature["image/class/label"].int64_list.value if (
            "image/class/label" in feature) else []
        label = int(labels[0]) - self.label_offset if labels else None
        name = filename.decode("utf-8", "replace") if filename else f"{base}#{index}"
        return RawRecord(encoded, label, name, origin, ordinal=index)


def _first_bytes(feature, key: str) -> bytes | None:
    if key not in feature or not feature[key].bytes_list.value:
        return None
    return feature[key].bytes_list.value[0]


def make_source(kind: str, path: str, num_classes: int = 1000, label_offset: int = 1) -> DataSource:
    """Returns the reader for `kind` (one of SOURCES) over `path`."""
    if kind == FashionMnistSource.name:
        return FashionMnistSource(path)
    if kind == ImageFolderSource.name:
        return ImageFolderSource(path)
    if kind == SlimTFRecordSource.name:
        return SlimTFRecordSource(path, num_classes=num_classes, label_offset=label_offset)
    raise SourceError(f"unknown data source {kind!r}; choose one of {SOURCES}")


SOURCE_TYPES = (FashionMnistSource, ImageFolderSource, SlimTFRecordSource)
SOURCES = tuple(kind.name for kind in SOURCE_TYPES)
