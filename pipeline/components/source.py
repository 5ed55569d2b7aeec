"""The Source protocol: what the pipeline needs to know of where its examples come from.

Two kinds implement it. The converters (`example_gen/sources.py`: Fashion-MNIST IDX files,
image folders, slim ImageNet shards) are read, validated and split by S4LExampleGen; already
split examples (`imported_examples.py`) are registered in place by an Importer. The command
line, the runners and the graph choose by the protocol's properties (`already_split`,
`dataset`, `remote_num_classes`), never by a source's name.
"""

from __future__ import annotations

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


def open_source(name: str, data_path: str, num_classes: int = 0,
                label_offset: int = 1) -> Source:
    """Opens and checks the source `name` at `data_path` (its layout, before any work)."""
    if source_type(name).already_split:
        return imported_examples.ImportedExamples(data_path, num_classes=num_classes)
    return sources.make_source(name, data_path, num_classes=num_classes or 1000,
                               label_offset=label_offset)
