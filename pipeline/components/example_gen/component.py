"""The S4LExampleGen TFX component (a Python-function component).

Outputs one Examples artifact with splits `labelled`, `unlabelled` and `eval`, plus
`split_stats.json` (split sizes, per-class counts, rejected records), which is also recorded
in ML Metadata as the artifact's `split_stats` custom property.
"""


import json

from tfx import v1 as tfx
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from modules import features
from pipeline.components.example_gen import build, sources


@tfx.dsl.components.component
def S4LExampleGen(  # noqa: N802 - TFX component names are CamelCase.
    examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    source: tfx.dsl.components.Parameter[str],
    data_path: tfx.dsl.components.Parameter[str],
    labelled_fraction: tfx.dsl.components.Parameter[float],
    label_map_path: tfx.dsl.components.Parameter[str],
    seed: tfx.dsl.components.Parameter[int],
    exclude_labelled: tfx.dsl.components.Parameter[int],
    num_shards: tfx.dsl.components.Parameter[int],
    validation_images: tfx.dsl.components.Parameter[int],
    num_classes: tfx.dsl.components.Parameter[int],
    label_offset: tfx.dsl.components.Parameter[int],
    source_fingerprint: tfx.dsl.components.Parameter[str],
) -> None:
    """Converts `source` at `data_path` and writes the three S4L splits.

    `source_fingerprint` is not read here: it changes the cache key when the data changes.
    """
    del source_fingerprint
    data = sources.make_source(source, data_path, num_classes=num_classes,
                               label_offset=label_offset)
    options = build.SplitOptions(
        labelled_fraction=labelled_fraction, label_map_path=label_map_path, seed=seed,
        exclude_labelled=bool(exclude_labelled), num_shards=num_shards,
        validation_images=validation_images)
    stats = build.build_splits(data, examples.uri, options)
    examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples.set_string_custom_property("split_stats", json.dumps(
        {"splits": {k: v["count"] for k, v in stats["splits"].items()},
         "rejected": stats["rejected"]["count"], "selection": stats["selection"]}))
    for name, split in stats["splits"].items():
        examples.set_int_custom_property(f"{name}_count", split["count"])
