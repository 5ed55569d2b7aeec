"""What the remote runners share: their command line, and data only remote workers read.

Every runner starts from the package's parser (pipeline/cli.py: the same --preset,
--labelled_fraction, --data_path, ... flags) and builds the one `create_pipeline(...)` from a
`cli.RunSpec`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline import cli

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


class RunnerError(cli.CliError):
    """A runner setting that cannot work; reported before anything is built."""


def runner_parser(description: str) -> argparse.ArgumentParser:
    """The package's parser (every data, method and run flag) under another description;
    the caller adds its own argument group."""
    parser = cli.build_parser()
    parser.description = description
    return parser


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
    from pipeline.components import source

    try:
        return source.source_type(args.source).remote_num_classes(args.num_classes)
    except ValueError as e:
        raise RunnerError(str(e)) from None


def prepare_remote(args: argparse.Namespace) -> tuple[list[Experiment], DataConfig]:
    """Stages and data settings for a gs:// data set, which is not opened here.

    The components read `--data_path` and `--label_map` through Cloud Storage FUSE
    (`fuse_path`). ExampleGen's cache key has no fingerprint of remote files: re-run with
    --no_cache after changing the data in place.
    """
    from pipeline import presets
    from pipeline.components import source
    from pipeline.config import DataConfig

    data_path = require_gcs("--data_path", args.data_path)
    label_map = ""
    if args.label_map:
        label_map = fuse_path(require_gcs("--label_map", args.label_map))
    num_classes = _num_classes(args)
    experiments = cli.make_experiments(args, num_classes)
    # No replica check here: this machine's devices say nothing about the training machine's
    # (the Vertex runner checks against the job's machine in apply_machine).
    presets.check_stages(experiments)
    if source.source_type(args.source).already_split:
        cli.check_split_flags(args)
        # The Importer registers the gs:// URI itself; TFX components read it natively.
        return experiments, DataConfig(source=args.source, data_path=data_path,
                                       num_classes=num_classes)
    data = DataConfig(source=args.source, data_path=fuse_path(data_path),
                      splits=cli.split_options(args, label_map), num_classes=num_classes,
                      label_offset=args.label_offset, fingerprint="")
    return experiments, data
