"""The data gate's policy: ExampleValidator's anomalies decide whether training starts.

ExampleValidator compares the statistics of every record of every split with the schema and
writes its anomalies, but TFX goes on whatever they say. The gate (`data_gate_component.py`)
reads them, adds what the schema cannot say (labels >= the run's class count, from the same
statistics), logs each one, records them on its output and stops the run when they mean wrong data
(`stop_on`). Its output is the schema that every Trainer reads, so the gate is a data
dependency of training, not an ordering hint. (Transform does not wait for it: it runs
beside the statistics, as before.)

"Wrong data": any anomaly of the image or label features (missing in some records, of the
wrong type, labels below 0 or >= the number of classes) and any anomaly of a split as a
whole (no records). Other anomalies (a missing file name, an unlisted image format) are
reported and do not stop the run unless `stop_on="any"`.
"""

from __future__ import annotations

import os
from typing import Any

from modules import features

STOP_ON = ("wrong_data", "any", "never")
DEFAULT_STOP_ON = "wrong_data"
GATE_ID = "S4LDataGate"
VALIDATOR_ID = "ExampleValidator"
_WRONG_DATA_FEATURES = (features.IMAGE_KEY, features.LABEL_KEY)
_ANOMALIES_FILE = "SchemaDiff.pb"  # ExampleValidator's file in each split folder.
_STATISTICS_FILE = "FeatureStats.pb"  # StatisticsGen's.


class DataAnomaliesError(RuntimeError):
    """Anomalies that the stop policy does not let through."""


def label_range_anomalies(statistics_uri: str, split_names: list[str],
                          num_classes: int) -> list[dict[str, Any]]:
    """A finding per split whose labels are not all in [0, num_classes), from StatisticsGen's
    statistics of every record (the schema bounds labels from below only: the class count is
    a property of the run).

    Not as an ExampleValidator custom validation: TFX 1.16's Kubeflow V2 (Vertex) compiler
    cannot compile that proto-valued setting.
    """
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import statistics_pb2

    found = []
    for split in split_names:
        path = os.path.join(statistics_uri, f"Split-{split}", _STATISTICS_FILE)
        if not num_classes or not tf.io.gfile.exists(path):
            continue
        with tf.io.gfile.GFile(path, "rb") as f:
            stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
        for dataset in stats.datasets:
            for feature in dataset.features:
                name = feature.path.step[-1] if feature.path.step else feature.name
                if name != features.LABEL_KEY or not feature.HasField("num_stats"):
                    continue
                low, high = feature.num_stats.min, feature.num_stats.max
                if low < 0 or high >= num_classes:
                    found.append({
                        "split": split, "feature": name, "severity": "ERROR",
                        "kinds": ["LABEL_OUT_OF_RANGE"], "wrong_data": True,
                        "description": f"labels from {low:g} to {high:g}, outside [0, "
                                       f"{num_classes}) for {num_classes} classes (labels "
                                       "are 0-based)"})
    return found


def read_anomalies(uri: str, split_names: list[str]) -> list[dict[str, Any]]:
    """Every anomaly of every split under an ExampleAnomalies artifact at `uri`, as
    {"split", "feature", "severity", "kinds", "description", "wrong_data"}."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found = []
    for split in split_names:
        path = os.path.join(uri, f"Split-{split}", _ANOMALIES_FILE)
        if not tf.io.gfile.exists(path):
            continue
        with tf.io.gfile.GFile(path, "rb") as f:
            anomalies = anomalies_pb2.Anomalies.FromString(f.read())
        infos = list(anomalies.anomaly_info.items())
        if anomalies.HasField("dataset_anomaly_info"):
            infos.append(("(split)", anomalies.dataset_anomaly_info))
        for feature, info in sorted(infos):
            found.append({
                "split": split, "feature": feature,
                "severity": anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                "kinds": [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason],
                "description": _describe_reasons(info),
                "wrong_data": feature in (*_WRONG_DATA_FEATURES, "(split)")})
    return found


def _describe_reasons(info) -> str:
    """What each reason says, shortest form first: a custom validation's own description
    (TFDV's repeats the SQL), the shape reason only when it is the only one (it comes with
    every presence anomaly)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    kinds = anomalies_pb2.AnomalyInfo
    reasons = [r for r in info.reason if r.type != kinds.INVALID_FEATURE_SHAPE]
    texts = [r.short_description if r.type == kinds.CUSTOM_VALIDATION
             else f"{r.short_description}: {r.description}" for r in (reasons or info.reason)]
    return "; ".join(texts) or info.description


def check_policy(stop_on: str) -> None:
    """Raises ValueError unless `stop_on` is one of STOP_ON."""
    if stop_on not in STOP_ON:
        raise ValueError(f"stop_on_anomalies={stop_on!r}: expected one of {', '.join(STOP_ON)}")


def blocking(found: list[dict[str, Any]], stop_on: str) -> list[dict[str, Any]]:
    """The anomalies that stop a run under the policy `stop_on`."""
    check_policy(stop_on)
    if stop_on == "never":
        return []
    return [a for a in found if stop_on == "any" or a["wrong_data"]]


def describe(anomaly: dict[str, Any]) -> str:
    return f"split {anomaly['split']}, {anomaly['feature']}: {anomaly['description']}"


def find(statistics_uri: str, anomalies_uri: str, split_names: list[str],
         num_classes: int) -> list[dict[str, Any]]:
    """ExampleValidator's anomalies and the label-range findings, by split."""
    found = (read_anomalies(anomalies_uri, split_names)
             + label_range_anomalies(statistics_uri, split_names, num_classes))
    order = {split: i for i, split in enumerate(split_names)}
    return sorted(found, key=lambda a: (order.get(a["split"], 0), a["feature"]))


def gate(statistics_uri: str, anomalies_uri: str, split_names: list[str], num_classes: int,
         stop_on: str) -> list[dict[str, Any]]:
    """Logs every finding; raises DataAnomaliesError when `stop_on` blocks any."""
    from absl import logging

    found = find(statistics_uri, anomalies_uri, split_names, num_classes)
    for anomaly in found:
        logging.warning("Data anomaly (%s): %s", "wrong data" if anomaly["wrong_data"]
                        else "reported", describe(anomaly))
    stopping = blocking(found, stop_on)
    if stopping:
        raise DataAnomaliesError(
            f"The data checks found {len(stopping)} anomal{'y' if len(stopping) == 1 else 'ies'}"
            f" that stop the run before training (--stop_on_anomalies {stop_on}): "
            + "; ".join(describe(a) for a in stopping)
            + f". Details: {anomalies_uri}. Fix the data, or rerun with --stop_on_anomalies "
            "never to train anyway.")
    return found
