"""The Source protocol: what the pipeline needs to know of where its examples come from.

Two kinds implement it. The converters (`example_gen/sources.py`: Fashion-MNIST IDX files,
image folders, slim ImageNet shards) are read, validated and split by S4LExampleGen; already
split examples (`imported_examples.py`) are registered in place by an Importer. The command
line, the runners and the graph choose by the protocol's properties (`already_split`,
`dataset`, `remote_num_classes`), never by a source's name.
"""

from __future__ import annotations

import os
from typing import ClassVar, Protocol

from pipeline.components import imported_examples
from pipeline.components.example_gen import sources


class Source(Protocol):
    """A place the examples come from, opened and checked (`open_source`)."""

    name: ClassVar[str]
    # True: the three splits exist already and are registered in place (no conversion, no
    # split settings); False: S4LExampleGen converts and splits the data.
    already_split: ClassVar[bool]
    # The preset variant that fits this kind of data, or "" where the data must say.
    dataset: ClassVar[str]

    @classmethod
    def remote_num_classes(cls, num_classes: int) -> int:
        """The class count of data this machine cannot open, from `--num_classes` (0: not
        given); raises ValueError where it is needed and not given."""

    @classmethod
    def recognises(cls, directory: str) -> bool:
        """Whether the local `directory` has this kind's layout."""

    def class_names(self) -> list[str]: ...

    def fingerprint(self) -> str:
        """Changes when the data does: a new cache key for what reads it."""

    def dataset_variant(self) -> str:
        """The preset variant this data is, or "" where it does not say."""

    def labelled_fraction(self) -> float | None:
        """The labelled fraction the data fixes (already split), or None."""


SOURCE_TYPES: dict[str, type[Source]] = {
    **{kind.name: kind for kind in sources.SOURCE_TYPES},
    imported_examples.NAME: imported_examples.ImportedExamples,
}
NAMES = tuple(SOURCE_TYPES)


def source_type(name: str) -> type[Source]:
    """The kind of source `name` (one of NAMES)."""
    if name not in SOURCE_TYPES:
        raise sources.SourceError(f"unknown data source {name!r}; choose one of {NAMES}")
    return SOURCE_TYPES[name]


DEFAULT_NAME = sources.FashionMnistSource.name
LAYOUTS = ("Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], ...); DIR/train/<class>/"
           "<image> with DIR/test/<class>/<image>; slim ImageNet shards (train-*-of-*, "
           "validation-*-of-*); DIR/Split-{labelled,unlabelled,eval}/ (converted examples)")


def infer_name(data_path: str) -> str:
    """The kind of source at `data_path`, from its layout: what `--source` means when it is
    not given. No path, or one this machine cannot list (gs://...), means Fashion-MNIST.

    Raises:
      sources.SourceError: a local directory of no known layout, or of several.
    """
    if not data_path or "://" in data_path:
        return DEFAULT_NAME
    if not os.path.isdir(data_path):
        raise sources.SourceError(f"--data_path {data_path!r} is not a directory")
    found = [name for name, kind in SOURCE_TYPES.items() if kind.recognises(data_path)]
    if not found:
        raise sources.SourceError(f"{data_path} has no layout --source knows; expected one of: "
                                  f"{LAYOUTS}")
    if len(found) > 1:
        raise sources.SourceError(f"{data_path} looks like several sources ({', '.join(found)}); "
                                  "say which with --source")
    return found[0]


def open_source(name: str, data_path: str, num_classes: int = 0,
                label_offset: int = 1) -> Source:
    """Opens and checks the source `name` at `data_path` (its layout, before any work)."""
    if source_type(name).already_split:
        return imported_examples.ImportedExamples(data_path, num_classes=num_classes)
    return sources.make_source(name, data_path, num_classes=num_classes or 1000,
                               label_offset=label_offset)
