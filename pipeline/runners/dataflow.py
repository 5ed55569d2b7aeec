"""Dataflow: Beam pipeline arguments that send the pipeline's Beam work (StatisticsGen,
Transform, Evaluator, BulkInferrer) to Dataflow, and a runner that orchestrates with
LocalDagRunner on this machine.

ExampleGen and the Trainer run here (S4LExampleGen's Beam passes with the DirectRunner: the
local files it converts are out of the workers' reach); artifacts go to a gs:// pipeline root
that the Dataflow workers read; ML Metadata stays in OUTPUT_DIR/metadata.sqlite. The workers
run the pipeline image (docker/Dockerfile, which has this package installed) as their SDK container.

Example:
  python -m pipeline.runners.dataflow --project P --region us-central1 \\
      --temp_location gs://B/tmp --image us-docker.pkg.dev/P/s4l/pipeline:REV \\
      --pipeline_root gs://B/s4l --preset supervised --labelled_fraction 0.1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys

from pipeline import cli, layout
from pipeline.runners import common

DEFAULT_MACHINE_TYPE = "n2-standard-4"
DEFAULT_MAX_WORKERS = 10
DEFAULT_DISK_SIZE_GB = 50
# S4LExampleGen's own Beam arguments, after Dataflow's (the later --runner wins).
LOCAL_CONVERSION_ARGS = ["--runner=DirectRunner", "--direct_running_mode=in_memory",
                         "--direct_num_workers=1"]
_REGION = re.compile(r"[a-z]+-[a-z]+\d+")


def dataflow_beam_args(*, project: str, region: str, temp_location: str, image: str,
                       staging_location: str = "", machine_type: str = DEFAULT_MACHINE_TYPE,
                       max_num_workers: int = DEFAULT_MAX_WORKERS,
                       disk_size_gb: int = DEFAULT_DISK_SIZE_GB, service_account: str = "",
                       ) -> list[str]:
    """`beam_pipeline_args` for Dataflow Runner v2 with the pipeline image as SDK container.

    Raises:
      common.RunnerError: a missing project or image, a region that is not one, a temp or
        staging location that is not gs://, or worker counts or disks below 1.
    """
    if not project:
        raise common.RunnerError("Dataflow needs --project")
    if not _REGION.fullmatch(region or ""):
        raise common.RunnerError(f"Dataflow needs --region, e.g. us-central1; got {region!r}")
    temp_location = common.require_gcs("--temp_location", temp_location)
    staging_location = common.require_gcs("--staging_location",
                                          staging_location or f"{temp_location}/staging")
    if not image:
        raise common.RunnerError("Dataflow workers need this package: pass --image, the "
                                 "pipeline image built from docker/Dockerfile")
    if max_num_workers < 1 or disk_size_gb < 1:
        raise common.RunnerError(f"--max_num_workers ({max_num_workers}) and --disk_size_gb "
                                 f"({disk_size_gb}) must be >= 1")
    args = [
        "--runner=DataflowRunner",
        f"--project={project}",
        f"--region={region}",
        f"--temp_location={temp_location}",
        f"--staging_location={staging_location}",
        f"--sdk_container_image={image}",
        "--sdk_location=container",
        "--experiments=use_runner_v2",
        f"--machine_type={machine_type}",
        f"--max_num_workers={max_num_workers}",
        f"--disk_size_gb={disk_size_gb}",
    ]
    if service_account:
        args.append(f"--service_account_email={service_account}")
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = common.runner_parser(__doc__)
    group = parser.add_argument_group("dataflow")
    group.add_argument("--project", default="", help="Google Cloud project (required).")
    group.add_argument("--region", default="", help="Dataflow region (required).")
    group.add_argument("--temp_location", default="",
                       help="gs:// directory for Dataflow temp files (required).")
    group.add_argument("--staging_location", default="",
                       help="gs:// staging directory (default TEMP_LOCATION/staging).")
    group.add_argument("--image", default="",
                       help="Worker SDK container: the pipeline image (required).")
    group.add_argument("--machine_type", default=DEFAULT_MACHINE_TYPE,
                       help=f"Worker machine type (default {DEFAULT_MACHINE_TYPE}).")
    group.add_argument("--max_num_workers", type=int, default=DEFAULT_MAX_WORKERS,
                       help=f"Autoscaling limit (default {DEFAULT_MAX_WORKERS}).")
    group.add_argument("--disk_size_gb", type=int, default=DEFAULT_DISK_SIZE_GB,
                       help=f"Worker disk (default {DEFAULT_DISK_SIZE_GB} GB).")
    group.add_argument("--service_account", default="", help="Worker service account.")
    return parser


def create_dataflow_pipeline(args: argparse.Namespace, beam_args: list[str] | None = None):
    """The pipeline with its Beam work on Dataflow. Raises ValueError on bad settings."""
    from pipeline import pipeline as pipeline_lib
    from pipeline.components import source

    pipeline_root = common.require_gcs("--pipeline_root", args.pipeline_root)
    if args.beam_workers != 1:
        raise common.RunnerError("--beam_workers sets the local DirectRunner; on Dataflow use "
                                 "--max_num_workers")
    if common.is_gcs(args.data_path) and not source.source_type(args.source).already_split:
        raise common.RunnerError("ExampleGen converts on this machine and reads local files: "
                                 "--data_path must be a local directory here (already-split "
                                 "examples on Cloud Storage: --source examples)")
    dataflow_args = dataflow_beam_args(
        project=args.project, region=args.region, temp_location=args.temp_location,
        staging_location=args.staging_location, image=args.image,
        machine_type=args.machine_type, max_num_workers=args.max_num_workers,
        disk_size_gb=args.disk_size_gb, service_account=args.service_account)
    paths = layout.remote_paths(args.output_dir, pipeline_root, args.push_destination,
                                args.hub_destination)
    spec = dataclasses.replace(cli.run_spec(args, paths, [*dataflow_args, *(beam_args or [])]),
                               example_gen_beam_args=tuple(LOCAL_CONVERSION_ARGS))
    return pipeline_lib.create_pipeline(**spec.pipeline_kwargs())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own_args, beam_args = cli.split_beam_args(argv)
    args = build_parser().parse_args(own_args)
    try:
        pipeline = create_dataflow_pipeline(args, beam_args)
    except ValueError as e:
        print(f"dataflow: error: {e}", file=sys.stderr)
        return 2
    from tfx import v1 as tfx

    os.makedirs(os.path.abspath(args.output_dir), exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    print(f"Artifacts under {pipeline.pipeline_info.pipeline_root}; ML Metadata in "
          f"{os.path.join(os.path.abspath(args.output_dir), 'metadata.sqlite')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
