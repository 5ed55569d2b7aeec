"""What the runners share: their command line, and data that only remote workers can read.

Every runner starts from beam_runner's parser (the same --preset, --labelled_fraction,
--data_path, ... flags) and its `prepare`/`pipeline_kwargs`, so all of them build the one
`create_pipeline(...)` from one command line.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import beam_runner  # Sets TF_USE_LEGACY_KERAS before TensorFlow is imported.

if TYPE_CHECKING:
    from modules.trainer.experiment import Experiment
    from pipeline.config import DataConfig

# Where docker/Dockerfile puts the repository in the pipeline image (the curated schema is
# read from there; the Python code is the installed package).
IMAGE_WORKDIR = "/pipeline"
IMAGE_SCHEMA_PATH = f"{IMAGE_WORKDIR}/data_schema/schema.pbtxt"
# Vertex AI mounts Cloud Storage into every pipeline and custom-job container with Cloud
# Storage FUSE at /gcs/<bucket>/<object>; the data sources read files with local file APIs.
GCS_FUSE_ROOT = "/gcs"


class RunnerError(beam_runner.CliError):
    """A runner setting that cannot work; reported before anything is built."""


def runner_parser(description: str) -> argparse.ArgumentParser:
    """beam_runner's parser (every data, method and run flag) under another description;
    the caller adds its own argument group."""
    parser = beam_runner.build_parser()
    parser.description = description
    return parser


def split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(runner flags, Beam arguments after `--`), as beam_runner splits them."""
    return beam_runner.split_beam_args(argv)


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


def require_gcs(flag: str, value: str) -> str:
    """`value` without a trailing slash; raises RunnerError unless it is gs://BUCKET[/...]."""
    if not value:
        raise RunnerError(f"{flag} is required (a gs:// URI)")
    if not is_gcs(value) or not value[len("gs://"):].split("/")[0]:
        raise RunnerError(f"{flag} must be a gs://BUCKET/... URI that remote workers can "
                          f"reach, got {value!r}")
    return value.rstrip("/")


def fuse_path(uri: str) -> str:
    """gs://BUCKET/PATH as the Cloud Storage FUSE path /gcs/BUCKET/PATH; other paths as given."""
    if not is_gcs(uri):
        return uri
    return f"{GCS_FUSE_ROOT}/{uri[len('gs://'):]}".rstrip("/")


def _num_classes(args: argparse.Namespace) -> int:
    from pipeline import imported_examples
    from pipeline.components.example_gen import sources

    if args.source == "fashion_mnist":
        return len(sources.FASHION_MNIST_CLASSES)
    if args.source == "imagenet_tfrecords":
        return args.num_classes or 1000
    if args.source == imported_examples.NAME and not args.num_classes:
        raise RunnerError("--num_classes is required for --source examples on Cloud Storage "
                          "(its split_stats.json is not read from this machine)")
    if not args.num_classes:
        raise RunnerError("--num_classes is required for an image_folder that only the "
                          "remote workers can read (its classes are its sub-folders)")
    return args.num_classes


def prepare_remote(args: argparse.Namespace) -> tuple[list[Experiment], DataConfig]:
    """Stages and data settings for a gs:// data set, which is not opened here.

    The components read `--data_path` and `--label_map` through Cloud Storage FUSE
    (`fuse_path`). ExampleGen's cache key has no fingerprint of remote files: re-run with
    --no_cache after changing the data in place.
    """
    from pipeline import imported_examples
    from pipeline import pipeline as pipeline_lib
    from pipeline.components.example_gen import splits
    from pipeline.config import DataConfig

    data_path = require_gcs("--data_path", args.data_path)
    label_map = ""
    if args.label_map:
        label_map = fuse_path(require_gcs("--label_map", args.label_map))
    else:
        splits.check_fraction(args.labelled_fraction)
    num_classes = _num_classes(args)
    experiments = beam_runner.make_experiments(args, num_classes)
    # No replica check here: this machine's devices say nothing about the training machine's
    # (the Vertex runner checks against the job's machine in apply_machine).
    pipeline_lib.check_stages(experiments)
    if args.source == imported_examples.NAME:
        if label_map:
            raise RunnerError("--source examples uses its Split-labelled/ as it is; "
                              "drop --label_map")
        # The Importer registers the gs:// URI itself; TFX components read it natively.
        return experiments, DataConfig(source=args.source, data_path=data_path,
                                       num_classes=num_classes, seed=args.seed)
    data = DataConfig(
        source=args.source, data_path=fuse_path(data_path),
        labelled_fraction=args.labelled_fraction, label_map_path=label_map, seed=args.seed,
        exclude_labelled=args.exclude_labelled, num_shards=args.num_shards,
        validation_images=args.validation_images, num_classes=num_classes,
        label_offset=args.label_offset, fingerprint="")
    return experiments, data
