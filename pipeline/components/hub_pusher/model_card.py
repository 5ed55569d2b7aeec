"""The model card of a published Hub version: facts as JSON, and the same facts as Markdown.

Every input but the model is optional: a fact whose source is missing is recorded as None
(JSON) or "unknown" (Markdown), never guessed.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"
INPUT_RANGE = (-1.0, 1.0)
MODULE_OUTPUTS = {"classification": "logits", "feature_vector": "pre_logits"}


_PREPROCESSING = {
    "resize_crop": "RGB, shorter side area-resized to resize_size, central crop to "
                   "image_size, scaled to [-1, 1]",
    "zero_pad": "RGB, centred on an image_size x image_size zero canvas without resizing "
                "(larger images: shorter side area-resized to image_size, central crop), "
                "scaled to [-1, 1] (zero pixels become -1)",
}


def data_facts(split_stats: dict[str, Any] | None) -> dict[str, Any]:
    """Classes, split sizes and the labelled fraction from ExampleGen's split_stats.json."""
    if not split_stats:
        return {}
    counts = {name: split["count"] for name, split in split_stats.get("splits", {}).items()}
    selection = split_stats.get("selection", {})
    labelled = counts.get("labelled")
    unlabelled = counts.get("unlabelled")
    # The unlabelled split holds every training image unless the labelled ones were left out.
    train = None
    if unlabelled is not None:
        excluded = selection.get("exclude_labelled_from_unlabelled")
        train = unlabelled + (labelled or 0) if excluded else unlabelled
    return {
        "source": split_stats.get("source"),
        "class_names": split_stats.get("classes"),
        "labelled_examples": labelled,
        "unlabelled_examples": unlabelled,
        "train_examples": train,
        "eval_examples": counts.get("eval"),
        "labelled_fraction_requested": selection.get("labelled_fraction"),
        "labelled_fraction": round(labelled / train, 6) if labelled and train else None,
        "labelled_selection": selection.get("method"),
        "label_map_path": selection.get("label_map_path"),
        "seed": selection.get("seed"),
    }


def build_card(*, model_name: str, version: str, published_at: str, source_model_uri: str,
               module_outputs: dict[str, list[int | None]],
               run_record: dict[str, Any] | None = None,
               split_stats: dict[str, Any] | None = None,
               metrics: dict[str, Any] | None = None, evaluation_uri: str | None = None,
               baseline_model_uri: str | None = None) -> dict[str, Any]:
    """The card's facts. `run_record` is the Trainer's experiment.json, `metrics` the output
    of evaluation_metrics.evaluation_metrics, `module_outputs` each module's output shape."""
    experiment = (run_record or {}).get("experiment", {})
    data = data_facts(split_stats)
    logits_shape = module_outputs.get("classification") or [None, None]
    num_classes = experiment.get("num_classes") or logits_shape[-1]
    image_size = experiment.get("image_size")
    overall = (metrics or {}).get("overall", {})
    return {
        "model_name": model_name,
        "version": version,
        "published_at": published_at,
        "modules": {
            name: {"path": name, "output": MODULE_OUTPUTS[name], "output_shape": shape}
            for name, shape in sorted(module_outputs.items())},
        "input": {
            "shape": [None, image_size, image_size, 3],
            "dtype": "float32",
            "range": list(INPUT_RANGE),
            "image_size": image_size,
            "preprocessing": _PREPROCESSING[experiment.get("image_fit", "resize_crop")],
            "resize_size": experiment.get("resize_size"),
        },
        "method": {
            "experiment": experiment.get("name"),
            "losses": experiment.get("losses"),
            "architecture": experiment.get("architecture"),
            "filters_factor": experiment.get("filters_factor"),
            "pseudo_labels_from": experiment.get("pseudo_labels_from") or None,
            "pseudo_label_views": (experiment.get("pseudo_label_views", "upright")
                                   if experiment.get("pseudo_labels_from") else None),
            "init_from": experiment.get("init_from") or None,
            "labelled_augment": experiment.get("labelled_augment", "weak"),
            "schedule_epochs": experiment.get("schedule_epochs"),
            "precision": experiment.get("precision"),
            "exported_weights": (run_record or {}).get("exported_weights"),
            "final_step": (run_record or {}).get("final_step"),
        },
        "data": {
            "dataset": experiment.get("dataset"),
            "labels": experiment.get("labels"),
            "num_classes": num_classes,
            **data,
        },
        "evaluation": {
            "top1": overall.get("top1"),
            "top5": overall.get("top5"),
            "examples": None if overall.get("examples") is None else int(overall["examples"]),
            "split": "eval",
            "per_class": (metrics or {}).get("per_class"),
            "tfma_output": evaluation_uri,
            "baseline_model": baseline_model_uri,
        },
        "source_model": source_model_uri,
    }


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{100 * value:.2f} %"


# Characters that start Markdown markup (emphasis, links, code, tables, HTML entities are
# already escaped by html.escape).
_MARKDOWN_SPECIAL = re.compile(r"[\\`*_{}\[\]()#+!|~]")


def _value(value: Any) -> str:
    """`value` as Markdown text: user-derived strings (class, stage and folder names) are
    escaped, so a name like `<img onerror=...>` shows as text and never becomes markup."""
    if value is None or value == "":
        return "unknown"
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return _MARKDOWN_SPECIAL.sub(r"\\\g<0>", html.escape(text, quote=False))


def _code(value: Any) -> str:
    """`value` as an inline code span (shown literally: CommonMark reads no markup or HTML
    inside one), delimited by more backticks than any run in it."""
    text = str(value)
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _shape(shape: list[int | None] | None) -> str:
    if shape is None:
        return "unknown"
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def render_markdown(card: dict[str, Any], version_dir: str) -> str:
    """A human-readable card with a usage snippet for hub.KerasLayer."""
    method, data, evaluation, inputs = (card["method"], card["data"], card["evaluation"],
                                        card["input"])
    size = inputs["image_size"]
    spatial = f"{size}, {size}" if size else "H, W"
    classes = data.get("class_names")
    # The usage block's fence is longer than any backtick run in the path it quotes.
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", version_dir)), default=0))
    lines = [
        f"# {_value(card['model_name'])}, version {_value(card['version'])}",
        "",
        f"S4L model {_code(method['experiment'])} published {_value(card['published_at'])} "
        f"from {_code(card['source_model'])}.",
        "",
        "## Modules",
        "",
        "| module | input | output |",
        "|---|---|---|",
    ]
    for name, module in card["modules"].items():
        lines.append(f"| `{name}/` | float32 images [N, {spatial}, 3] in [-1, 1] | "
                     f"`{module['output']}` {_shape(module['output_shape'])} |")
    lines += [
        "",
        f"Input preprocessing: {inputs['preprocessing']} (resize_size "
        f"{_value(inputs['resize_size'])}, image_size {_value(inputs['image_size'])}).",
        "",
        "## Method",
        "",
        f"* experiment: {_code(method['experiment'])}",
        f"* losses (weights): {_value(method['losses'])}",
        f"* architecture: {_value(method['architecture'])} (filters factor "
        f"{_value(method['filters_factor'])}), precision {_value(method['precision'])}",
        f"* schedule (labelled epochs): {_value(method['schedule_epochs'])}, "
        f"final step {_value(method['final_step'])}",
        f"* exported weights: {_value(method['exported_weights'])}",
    ]
    if method["pseudo_labels_from"]:
        lines.append(f"* trained on pseudo-labels from stage {_code(method['pseudo_labels_from'])}"
                     f" ({_value(method['pseudo_label_views'])} views)")
    if method["init_from"]:
        lines.append(f"* initialised from stage {_code(method['init_from'])}")
    if method["labelled_augment"] == "strong":
        lines.append("* trained on strong views (RandAugment-style ops and Cutout) of its "
                     "labelled images")
    lines += [
        "",
        "## Data",
        "",
        f"* dataset: {_value(data['dataset'])} (source {_value(data.get('source'))}), "
        f"{_value(data['num_classes'])} classes",
        f"* class names: {', '.join(_value(c) for c in classes) if classes else 'unknown'}",
        f"* labelled: {_value(data.get('labelled_examples'))} of "
        f"{_value(data.get('train_examples'))} training images "
        f"(fraction {_value(data.get('labelled_fraction'))}, requested "
        f"{_value(data.get('labelled_fraction_requested'))}, "
        f"selection {_value(data.get('labelled_selection'))}, seed {_value(data.get('seed'))})",
        f"* unlabelled split: {_value(data.get('unlabelled_examples'))} images",
        "",
        "## Evaluation (TFMA)",
        "",
        f"* top-1: {_pct(evaluation['top1'])}",
        f"* top-5: {_pct(evaluation['top5'])}",
        f"* examples: {_value(evaluation['examples'])} (split {_code(evaluation['split'])})",
        f"* TFMA output: {_code(evaluation['tfma_output'])}",
        f"* blessed against baseline: "
        f"{_code(evaluation['baseline_model']) if evaluation['baseline_model'] else 'none'}",
        "",
        "## Usage",
        "",
        f"{fence}python",
        "import os",
        "os.environ[\"TF_USE_LEGACY_KERAS\"] = \"1\"  # before TensorFlow is imported",
        "import tensorflow_hub as hub",
        "import tf_keras",
        "",
        f"classifier = hub.KerasLayer(\"{version_dir}/classification\")",
        "logits = classifier(images)  # float32 [N, H, W, 3] in [-1, 1]",
        f"features = hub.KerasLayer(\"{version_dir}/feature_vector\", trainable=True)",
        "model = tf_keras.Sequential([features, tf_keras.layers.Dense(num_new_classes)])",
        fence,
        "",
    ]
    return "\n".join(lines)
