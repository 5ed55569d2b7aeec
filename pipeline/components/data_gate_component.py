"""The S4LDataGate TFX component (a Python-function component; policy in `data_gate.py`).

Its output, `checked_schema`, is the schema it was given, passed on only when the run may
go on: every Trainer reads it, so nothing trains on data the gate stopped.
"""

import json
import os

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils

from pipeline.components import data_gate


@tfx.dsl.components.component
def S4LDataGate(  # noqa: N802 - TFX component names are CamelCase.
    statistics: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleStatistics],
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    checked_schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
    num_classes: tfx.dsl.components.Parameter[int],
    stop_on: tfx.dsl.components.Parameter[str],
) -> None:
    """Logs the anomalies, records them on `checked_schema` (custom property
    `data_anomalies`) and copies `schema` there, unless they stop the run."""
    found = data_gate.gate(statistics.uri, anomalies.uri,
                           artifact_utils.decode_split_names(anomalies.split_names),
                           num_classes, stop_on)
    checked_schema.set_string_custom_property("data_anomalies", json.dumps(found))
    for name in tf.io.gfile.listdir(schema.uri):
        tf.io.gfile.copy(os.path.join(schema.uri, name), os.path.join(checked_schema.uri, name),
                         overwrite=True)


def data_gate_node(statistics, anomalies, schema, num_classes: int, stop_on: str):
    """The gate between ExampleValidator and the Trainers."""
    return S4LDataGate(statistics=statistics, anomalies=anomalies, schema=schema,
                       num_classes=num_classes, stop_on=stop_on).with_id(data_gate.GATE_ID)
