"""Where a run's things are: the schema, run directories and component ids.

One home for the paths every runner derives from `--output_dir` and friends, and for the node
ids that `create_pipeline` gives the per-stage components and the run summary looks up.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import data_schema

# data_schema is a package, so the schema is found in non-editable installs (containers) too.
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(data_schema.__file__)),
                           "schema.pbtxt")

# Components built once per stage, as `<Component>.<stage>`.
TRAINER = "Trainer"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"
HUB_PUSHER = "HubPusher"
BULK_INFERRER = "BulkInferrer"
BASELINE_RESOLVER = "baseline_resolver"
EXAMPLE_GEN = "S4LExampleGen"
TRANSFORM = "Transform"


def stage_node_id(component: str, stage: str) -> str:
    """The node id of `component` built for the experiment named `stage`."""
    return f"{component}.{stage}"


def resolve_hub_destination(push_destination: str, hub_destination: str = "") -> str:
    """Where Hub modules go: `hub_destination`, or `push_destination/hub` when empty."""
    return hub_destination or os.path.join(push_destination, "hub")


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Every directory of one run. `metadata_path` is empty where the orchestrator keeps ML
    Metadata itself (Vertex)."""

    output_dir: str
    pipeline_root: str
    metadata_path: str
    push_destination: str
    hub_destination: str

    @property
    def summary_path(self) -> str:
        return os.path.join(self.output_dir, "summary.json")

    @property
    def report_path(self) -> str:
        return os.path.join(self.output_dir, "report.html")


def local_paths(output_dir: str, pipeline_root: str = "", push_destination: str = "",
                hub_destination: str = "") -> RunPaths:
    """Paths of a run on this machine: artifacts and SQLite metadata under
    OUTPUT_DIR/tfx, pushed models under OUTPUT_DIR/serving_model unless given."""
    output_dir = os.path.abspath(output_dir)
    root = os.path.abspath(pipeline_root or os.path.join(output_dir, "tfx"))
    push = push_destination or os.path.join(output_dir, "serving_model")
    return RunPaths(output_dir=output_dir, pipeline_root=root,
                    metadata_path=os.path.join(root, "metadata.sqlite"), push_destination=push,
                    hub_destination=resolve_hub_destination(push, hub_destination))


def remote_paths(output_dir: str, pipeline_root: str, push_destination: str = "",
                 hub_destination: str = "", local_metadata: bool = True) -> RunPaths:
    """Paths of a run whose artifacts live on Cloud Storage (`pipeline_root` gs://...):
    pushed models under PIPELINE_ROOT/serving_model unless given; with `local_metadata`
    the SQLite ML Metadata stays on this machine, in OUTPUT_DIR (Dataflow)."""
    output_dir = os.path.abspath(output_dir)
    push = push_destination or f"{pipeline_root}/serving_model"
    metadata = os.path.join(output_dir, "metadata.sqlite") if local_metadata else ""
    return RunPaths(output_dir=output_dir, pipeline_root=pipeline_root, metadata_path=metadata,
                    push_destination=push,
                    hub_destination=resolve_hub_destination(push, hub_destination))


def check_destinations(push_destination: str, hub_destination: str,
                       names: Sequence[str]) -> None:
    """Raises ValueError when a stage's Hub versions would land among (or contain) any
    stage's serving versions: both number their version directories."""
    for hub_name in names:
        hub_dir = os.path.join(hub_destination, hub_name)
        for name in names:
            serving_dir = os.path.join(push_destination, name)
            if _inside(hub_dir, serving_dir) or _inside(serving_dir, hub_dir):
                raise ValueError(f"Hub modules of stage {hub_name!r} ({hub_dir}) would mix with "
                                 f"the serving models of stage {name!r} ({serving_dir}); "
                                 "choose another hub destination")


def _inside(path: str, directory: str) -> bool:
    path, directory = path.rstrip("/"), directory.rstrip("/")
    return path == directory or path.startswith(directory + "/")
