"""Reads a finished run back out of ML Metadata and TFMA: top-1/top-5, blessing, push, paths."""

from __future__ import annotations

import json
import os
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from modules import features
from pipeline import layout
from pipeline.components import data_gate, imported_examples
from pipeline.components.evaluation_metrics import evaluation_metrics

_OUTPUT = metadata_store_pb2.Event.OUTPUT
_NO_VALUE = metadata_store_pb2.Value()


def _latest_execution(store: metadata_store.MetadataStore, pipeline_name: str,
                      node_id: str) -> metadata_store_pb2.Execution | None:
    """The newest execution of a node: from its "node" context (the portable orchestrators:
    local, Vertex), else by the `component_id` property that TFX's legacy launcher (the
    Airflow runner) records on each execution."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is not None:
        executions = store.get_executions_by_context(context.id)
    else:
        executions = [e for e in store.get_executions()
                      if e.properties.get("component_id", _NO_VALUE).string_value == node_id
                      and e.properties.get("pipeline_name", _NO_VALUE).string_value
                      == pipeline_name]
    return max(executions, key=lambda e: e.id) if executions else None


def _latest_outputs(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str
                    ) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """Output artifacts (by output key) of the newest execution of a node."""
    latest = _latest_execution(store, pipeline_name, node_id)
    if latest is None:
        return {}
    outputs: dict[str, list] = {}
    for event in store.get_events_by_execution_ids([latest.id]):
        if event.type != _OUTPUT:
            continue
        key = event.path.steps[0].key if event.path.steps else ""
        outputs.setdefault(key, []).extend(store.get_artifacts_by_id([event.artifact_id]))
    return outputs


def _read_only_store(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def latest_output_uri(metadata_path: str, pipeline_name: str, node_id: str,
                      key: str) -> str | None:
    """Where the newest execution of a node wrote its `key` output, or None."""
    outputs = _latest_outputs(_read_only_store(metadata_path), pipeline_name, node_id)
    return outputs[key][0].uri if outputs.get(key) else None


def summarize(metadata_path: str, pipeline_name: str, model_name: str,
              num_classes: int = 0) -> dict[str, Any]:
    """The summary of the latest run of `pipeline_name` recorded in `metadata_path`
    (`num_classes`: the run's, for the label checks; default: split_stats' class count)."""
    store = _read_only_store(metadata_path)
    examples = (_latest_outputs(store, pipeline_name, layout.EXAMPLE_GEN).get("examples")
                or _latest_outputs(store, pipeline_name, imported_examples.IMPORTER_ID)
                .get("result", []))

    def stage_outputs(component: str) -> dict[str, list]:
        return _latest_outputs(store, pipeline_name,
                               layout.stage_node_id(component, model_name))

    trainer = stage_outputs(layout.TRAINER)
    evaluator = stage_outputs(layout.EVALUATOR)
    pusher = stage_outputs(layout.PUSHER)
    hub_pusher = stage_outputs(layout.HUB_PUSHER)
    summary: dict[str, Any] = {"pipeline_name": pipeline_name, "model": model_name}
    class_names = None
    if examples:
        summary["examples_dir"] = examples[0].uri
    if examples and os.path.exists(os.path.join(examples[0].uri, features.SPLIT_STATS_FILE)):
        stats_path = os.path.join(examples[0].uri, features.SPLIT_STATS_FILE)
        with open(stats_path) as f:
            stats = json.load(f)
        class_names = stats["classes"]
        summary["splits"] = {k: v["count"] for k, v in stats["splits"].items()}
        summary["rejected_records"] = stats["rejected"]["count"]
        summary["split_stats"] = stats_path
    anomalies = _latest_outputs(store, pipeline_name, data_gate.VALIDATOR_ID).get("anomalies")
    statistics = _latest_outputs(store, pipeline_name, "StatisticsGen").get("statistics")
    if anomalies and statistics:
        split_names = json.loads(anomalies[0].properties["split_names"].string_value or "[]")
        summary["data_anomalies"] = data_gate.find(
            statistics[0].uri, anomalies[0].uri, split_names,
            num_classes or len(class_names or []))
    if trainer.get("model"):
        summary["model_dir"] = trainer["model"][0].uri
    if trainer.get("model_run"):
        summary["tensorboard_logdir"] = trainer["model_run"][0].uri
    if evaluator.get("evaluation"):
        uri = evaluator["evaluation"][0].uri
        metrics = evaluation_metrics(uri, class_names)
        summary.update(top1=metrics["overall"].get("top1"), top5=metrics["overall"].get("top5"),
                       eval_examples=metrics["overall"].get("examples"),
                       per_class=metrics["per_class"], evaluation_dir=uri)
    if evaluator.get("blessing"):
        blessing = evaluator["blessing"][0]
        summary["blessed"] = bool(blessing.custom_properties["blessed"].int_value)
    if pusher.get("pushed_model"):
        pushed = pusher["pushed_model"][0]
        summary["pushed"] = bool(pushed.custom_properties["pushed"].int_value)
        destination = pushed.custom_properties.get("pushed_destination")
        summary["pushed_to"] = destination.string_value if destination else None
    if hub_pusher.get("pushed_model"):
        published = hub_pusher["pushed_model"][0]
        summary["hub_pushed"] = bool(published.custom_properties["pushed"].int_value)
        destination = published.custom_properties.get("pushed_destination")
        summary["hub_module_dir"] = (destination.string_value
                                     if destination and summary["hub_pushed"] else None)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A few human-readable lines."""
    def pct(value):
        return "n/a" if value is None else f"{100 * value:.2f} %"

    def count(value):
        return "n/a" if value is None else f"{int(value):,}"

    splits = ", ".join(f"{name} {count(n)}" for name, n in (summary.get("splits") or {}).items())

    lines = [
        f"S4L run summary ({summary.get('pipeline_name')}, model {summary.get('model')})",
        f"  splits:        {splits or 'n/a'}  (rejected records: "
        f"{count(summary.get('rejected_records'))})",
        f"  data checks:   {format_anomalies(summary.get('data_anomalies'))}",
        f"  top-1:         {pct(summary.get('top1'))}",
        f"  top-5:         {pct(summary.get('top5'))}  on "
        f"{count(summary.get('eval_examples'))} images",
        f"  blessed:       {summary.get('blessed')}",
        f"  pushed to:     {summary.get('pushed_to') if summary.get('pushed') else 'not pushed'}",
        f"  hub modules:   "
        f"{summary.get('hub_module_dir') if summary.get('hub_pushed') else 'not published'}",
        f"  evaluation:    {summary.get('evaluation_dir')}",
        f"  tensorboard:   {summary.get('tensorboard_logdir')}",
    ]
    return "\n".join(lines)


def format_anomalies(anomalies: list[dict[str, Any]] | None) -> str:
    """One line: how many ExampleValidator anomalies, how many mean wrong data, which."""
    if anomalies is None:
        return "n/a"
    if not anomalies:
        return "no anomalies"
    wrong = sum(a["wrong_data"] for a in anomalies)
    names = sorted({f"{a['split']}/{a['feature']}" for a in anomalies})
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"{len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'} ({wrong} wrong "
            f"data): {shown}; see summary.json")
