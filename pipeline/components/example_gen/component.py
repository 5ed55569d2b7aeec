"""The S4LExampleGen TFX component: a Beam component, so its conversion runs on the
pipeline's Beam runner (`--beam_workers N` processes locally, Dataflow workers at scale).

Outputs one Examples artifact with splits `labelled`, `unlabelled` and `eval`, plus
`split_stats.json` (split sizes, per-class counts, rejected records), which is also recorded
in ML Metadata as the artifact's `split_stats` custom property.
"""

from __future__ import annotations

import json
from typing import Any

from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from modules import features
from pipeline.components.example_gen import build, sources


class S4LExampleGenSpec(types.ComponentSpec):
    """Parameters of S4LExampleGen; `source_fingerprint` only changes the cache key when
    the data changes."""

    PARAMETERS = {
        "source": ExecutionParameter(type=str),
        "data_path": ExecutionParameter(type=str),
        "labelled_fraction": ExecutionParameter(type=float),
        "label_map_path": ExecutionParameter(type=str),
        "seed": ExecutionParameter(type=int),
        "exclude_labelled": ExecutionParameter(type=int),
        "num_shards": ExecutionParameter(type=int),
        "validation_images": ExecutionParameter(type=int),
        "num_classes": ExecutionParameter(type=int),
        "label_offset": ExecutionParameter(type=int),
        "source_fingerprint": ExecutionParameter(type=str),
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class Executor(base_beam_executor.BaseBeamExecutor):
    """Converts the source and writes the three S4L splits with the component's Beam
    pipeline arguments."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],  # noqa: N802 - TFX's name.
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        del input_dict
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        p = exec_properties
        data = sources.make_source(p["source"], p["data_path"], num_classes=p["num_classes"],
                                   label_offset=p["label_offset"])
        options = build.SplitOptions(
            labelled_fraction=p["labelled_fraction"], label_map_path=p["label_map_path"],
            seed=p["seed"], exclude_labelled=bool(p["exclude_labelled"]),
            num_shards=p["num_shards"], validation_images=p["validation_images"])
        stats = build.build_splits(data, examples.uri, options,
                                   make_pipeline=self._make_beam_pipeline)
        examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
        examples_utils.set_payload_format(examples,
                                          example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples.set_string_custom_property("split_stats", json.dumps(
            {"splits": {k: v["count"] for k, v in stats["splits"].items()},
             "rejected": stats["rejected"]["count"], "selection": stats["selection"]}))
        for name, split in stats["splits"].items():
            examples.set_int_custom_property(f"{name}_count", split["count"])


class S4LExampleGen(base_beam_component.BaseBeamComponent):
    """Converts `source` at `data_path` into the `labelled`, `unlabelled` and `eval` splits."""

    SPEC_CLASS = S4LExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, *, source: str, data_path: str, labelled_fraction: float,
                 label_map_path: str, seed: int, exclude_labelled: int, num_shards: int,
                 validation_images: int, num_classes: int, label_offset: int,
                 source_fingerprint: str):
        super().__init__(spec=S4LExampleGenSpec(
            source=source, data_path=data_path, labelled_fraction=labelled_fraction,
            label_map_path=label_map_path, seed=seed, exclude_labelled=exclude_labelled,
            num_shards=num_shards, validation_images=validation_images,
            num_classes=num_classes, label_offset=label_offset,
            source_fingerprint=source_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples)))
