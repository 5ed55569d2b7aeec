"""Top-1/top-5 of the evaluated model from an Evaluator (TFMA) output directory.

Read by the HubPusher (model card) and by the run summary after the run.
"""

from __future__ import annotations

from typing import Any

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.writers import eval_config_writer

from modules import features


def _metric(metrics: dict, name: str) -> float | None:
    value = metrics.get("", {}).get("", {}).get(name)
    return None if value is None else float(value.get("doubleValue", value.get("int64Value", 0)))


def candidate_model_name(evaluation_uri: str) -> str | None:
    """The evaluated (non-baseline) model's name in a TFMA output, None for a one-model run.

    With a baseline the TFX Evaluator names the models "candidate" and "baseline", and
    `tfma.load_eval_result` without a model name keeps only slices that carry diff metrics.
    """
    config, _, _, locations = eval_config_writer.load_eval_run(evaluation_uri)
    specs = list(config.model_specs) if config else []
    if len(specs) < 2:
        return None
    names = [spec.name for spec in specs if not spec.is_baseline]
    if len(names) != 1:
        raise ValueError(f"{evaluation_uri}: expected one candidate model, got {names} "
                         f"(models {sorted(locations)})")
    return names[0]


def evaluation_metrics(evaluation_uri: str, class_names: list[str] | None = None
                       ) -> dict[str, Any]:
    """Overall and per-class top-1/top-5 and example counts of the candidate model from a
    TFMA output directory (the baseline's metrics, when there is one, are left out)."""
    result = tfma.load_eval_result(evaluation_uri,
                                   model_name=candidate_model_name(evaluation_uri))
    overall, per_class = {}, {}
    for slice_key, metrics in result.slicing_metrics:
        values = {"top1": _metric(metrics, "sparse_categorical_accuracy"),
                  "top5": _metric(metrics, "sparse_top_k_categorical_accuracy"),
                  "examples": _metric(metrics, "example_count")}
        if not slice_key:
            overall = values
        elif slice_key[0][0] == features.LABEL_KEY:
            label = int(slice_key[0][1])
            name = class_names[label] if class_names and label < len(class_names) else str(label)
            per_class[name] = values
    return {"overall": overall, "per_class": dict(sorted(per_class.items()))}
