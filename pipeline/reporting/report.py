"""Renders a run's summary and TFMA results as one self-contained HTML report.

`render_report(summary, path)` takes the dict that `beam_runner.py` writes to `summary.json`
(`run_summary.summarize` plus the run-level keys) and writes `path`: overall top-1/top-5,
blessing and push status, a per-class table, the confusion matrix read from the TFMA output
(`MultiClassConfusionMatrixPlot`, rows = true class, columns = predicted class), the TensorBoard
log directory with the command to view it, the experiment's key fields and the run command.
A multi-stage run (`summary["stages"]`) gets one section per stage.

The confusion-matrix PNG is embedded as a base64 `data:` URI rather than written as a sibling
file: the report stays one file that can be copied, attached to a ticket or served from an
artifact store without a relative link breaking, and a 10-class PNG is only a few tens of KB.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
import shlex
from typing import Any

import numpy as np
import tensorflow_model_analysis as tfma

from pipeline.components import evaluation_metrics
from pipeline.reporting import curves, run_summary

# The plot's key in `tfma.load_eval_result(...).plots` (camelCase JSON of the proto field).
CONFUSION_PLOT_KEY = "multiClassConfusionMatrixAtThresholds"
# Above this many classes the matrix cells are too small for printed counts.
_MAX_ANNOTATED_CLASSES = 20

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em;
       color: #222; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em;
     border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { background: #f6f8fa; padding: 0.15em 0.35em; border-radius: 3px; }
pre { padding: 0.6em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.ok { color: #1a7f37; font-weight: bold; } .bad { color: #cf222e; font-weight: bold; }
.note { color: #666; font-style: italic; }
img.confusion, img.curves { max-width: 100%; height: auto; border: 1px solid #ddd; }
"""

# Sets <body data-images-loaded="true|false"> once every image has loaded (or failed): lets a
# headless browser check (tests/pipeline/test_report.py) that the embedded PNG decodes.
_IMAGES_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.imagesLoaded = ok ? "true" : "false";
  document.body.dataset.imageCount = String(images.length);
});
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f} %"


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{int(round(float(value))):,}"


# ---------------------------------------------------------------------------- TFMA reading


def _candidate_model_name(evaluation_dir: str) -> str | None:
    """`evaluation_metrics.candidate_model_name`, or None where the evaluation has no
    readable config (an old or partial output: `load_eval_result` then decides)."""
    try:
        return evaluation_metrics.candidate_model_name(evaluation_dir)
    except Exception:  # noqa: BLE001 - the report must render whatever TFMA left behind.
        return None


def _matrix_entries(plot: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Entries of the argmax (lowest-threshold) matrix of one slice's plots, or None."""
    for outputs in plot.values():  # output name -> sub key -> plot name -> data
        for sub_keys in outputs.values():
            data = sub_keys.get(CONFUSION_PLOT_KEY)
            if data is None:
                continue
            matrices = data.get("matrices", [])
            if not matrices:
                return []
            best = min(matrices, key=lambda m: float(m.get("threshold", 0.0)))
            return best.get("entries", [])
    return None


def confusion_matrix(evaluation_dir: str, num_classes: int) -> np.ndarray | None:
    """The overall slice's confusion matrix from a TFMA evaluation output directory.

    Args:
        evaluation_dir: The Evaluator's `evaluation` artifact URI (or any TFMA output path).
        num_classes: Size of the square matrix; labels are 0-based.

    Returns:
        `counts[true_class, predicted_class]` as float64 (weighted example counts), or None
        when the evaluation has no `MultiClassConfusionMatrixPlot` (runs before it was added).
        Entries without a prediction (predicted id -1, no class above the threshold) and ids
        outside `[0, num_classes)` are left out.
    """
    result = tfma.load_eval_result(evaluation_dir,
                                   model_name=_candidate_model_name(evaluation_dir))
    for slice_key, plot in result.plots or []:
        if slice_key:  # per-class slices; only the overall slice has the full matrix
            continue
        entries = _matrix_entries(plot or {})
        if entries is None:
            continue
        counts = np.zeros((num_classes, num_classes), np.float64)
        for entry in entries:  # proto3 JSON omits zero-valued ids
            actual = int(entry.get("actualClassId", 0))
            predicted = int(entry.get("predictedClassId", 0))
            if 0 <= actual < num_classes and 0 <= predicted < num_classes:
                counts[actual, predicted] += float(entry.get("numWeightedExamples", 0.0))
        return counts
    return None


# ---------------------------------------------------------------------------- drawing


def confusion_png(counts: np.ndarray, class_names: list[str]) -> bytes:
    """A PNG of the matrix: row-normalised colour, raw counts printed in small matrices."""
    # Figure + Agg canvas directly: no pyplot global state, no backend switch in the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = counts.shape[0]
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    side = min(max(4.5, 0.55 * n + 2.5), 14.0)
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (overall slice)")
    if n <= _MAX_ANNOTATED_CLASSES:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        # parse_math=False: a class name with "$" is text, not mathtext.
        ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=8, parse_math=False)
        ax.set_yticklabels(class_names, fontsize=8, parse_math=False)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(round(counts[i, j]))}", ha="center", va="center",
                        fontsize=7, color="white" if normalised[i, j] > 0.5 else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------------------- HTML pieces


def _load_split_stats(summary: dict[str, Any]) -> dict[str, Any]:
    path = summary.get("split_stats")
    if not path:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        logging.warning("report: cannot read split stats %s: %s", path, e)
        return {}


def _class_names(summary: dict[str, Any], stats: dict[str, Any]) -> list[str]:
    """Class names in label order: split_stats' "classes" (per_class is sorted by name)."""
    if stats.get("classes"):
        return [str(c) for c in stats["classes"]]
    per_class = summary.get("per_class") or {}
    num_classes = (summary.get("experiment") or {}).get("num_classes")
    if per_class and all(str(k).isdigit() for k in per_class):  # run_summary's fallback keys
        num_classes = max(num_classes or 0, max(int(k) for k in per_class) + 1)
    if num_classes:
        return [str(i) for i in range(int(num_classes))]
    return sorted(per_class)  # no label order known: at least list every class


def _kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{body}</table>"


def _status(flag: bool | None, yes: str, no: str) -> str:
    if flag is None:
        return "<span class='note'>unknown</span>"
    if flag:
        return f"<span class='ok'>{_esc(yes)}</span>"
    return f"<span class='bad'>{_esc(no)}</span>"


def _experiment_rows(experiment: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    fraction = (stats.get("selection") or {}).get("labelled_fraction")
    if experiment.get("name"):
        rows.append(("method / preset", _esc(experiment["name"])))
    for key in ("dataset", "labels"):
        if experiment.get(key):
            rows.append((key, _esc(experiment[key])))
    if fraction is not None:
        rows.append(("labelled fraction", _esc(f"{100 * float(fraction):g} %")))
    if experiment.get("losses"):
        losses = ", ".join(f"{k} x {v:g}" for k, v in experiment["losses"].items())
        rows.append(("losses (weights)", _esc(losses)))
    if experiment.get("schedule_epochs"):
        rows.append(("labelled epochs", _esc(f"{float(experiment['schedule_epochs'][-1]):g}")
                     + f" <span class='note'>(schedule {_esc(experiment['schedule_epochs'])})"
                       "</span>"))
    if "batch_size" in experiment:
        batch = f"{experiment['batch_size']}"
        unsup = int(experiment["batch_size"] * float(experiment.get("unsup_batch_mult") or 0))
        if unsup:
            batch += f" labelled + {unsup} unlabelled"
        rows.append(("batch size", _esc(batch)))
    if experiment.get("lr") is not None:
        rows.append(("learning rate", _esc(_learning_rate(experiment))))
    for key in ("weight_decay", "architecture", "filters_factor", "precision",
                "labelled_augment", "pseudo_labels_from", "init_from", "seed"):
        if experiment.get(key) not in (None, ""):
            rows.append((key, _esc(experiment[key])))
    if experiment.get("pseudo_labels_from"):
        rows.append(("pseudo_label_views", _esc(experiment.get("pseudo_label_views",
                                                                 "upright"))))
    return rows


def _learning_rate(experiment: dict[str, Any]) -> str:
    """The peak LR training used: `lr` scaled by batch / lr_scale_batch_size where set."""
    lr, scale = float(experiment["lr"]), int(experiment.get("lr_scale_batch_size") or 0)
    if not scale or "batch_size" not in experiment:
        return f"{lr:g}"
    batch = int(experiment["batch_size"])
    return f"{lr * batch / scale:g} (lr {lr:g} per {scale} images, batch {batch})"


def _curves_html(summary: dict[str, Any]) -> str:
    record = curves.load_run_record(summary.get("tensorboard_logdir"))
    try:
        png = curves.curves_png(record) if record else None
    except Exception as e:  # noqa: BLE001 - a drawing failure must not lose the report.
        logging.warning("Could not draw the training curves: %s", e)
        return f"<p class='note'>The training curves could not be drawn ({_esc(e)}).</p>"
    if png is None:
        return "<p class='note'>No per-round training history in this run.</p>"
    data = base64.b64encode(png).decode("ascii")
    return (f"<img class='curves' alt='training losses, top-1 and learning rate per round' "
            f"src='data:image/png;base64,{data}'>")


def _per_class_table(summary: dict[str, Any], class_names: list[str]) -> str:
    per_class = summary.get("per_class") or {}
    if not per_class:
        return "<p class='note'>No per-class metrics in this run.</p>"
    names = [n for n in class_names if n in per_class]
    names += sorted(n for n in per_class if n not in set(names))
    rows = []
    for name in names:
        label = class_names.index(name) if name in class_names else ""
        values = per_class[name] or {}
        rows.append(f"<tr class='class-row'><td class='num'>{_esc(label)}</td>"
                    f"<td>{_esc(name)}</td><td class='num'>{_pct(values.get('top1'))}</td>"
                    f"<td class='num'>{_pct(values.get('top5'))}</td>"
                    f"<td class='num'>{_count(values.get('examples'))}</td></tr>")
    return ("<table class='per-class'><thead><tr><th>label</th><th>class</th><th>top-1</th>"
            "<th>top-5</th><th>examples</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _confusion_html(summary: dict[str, Any], class_names: list[str]) -> str:
    evaluation_dir = summary.get("evaluation_dir")
    if not evaluation_dir:
        return ("<p class='note confusion-missing'>No evaluation in this run: "
                "no confusion matrix.</p>")
    try:
        counts = confusion_matrix(evaluation_dir, len(class_names))
    except Exception as e:  # noqa: BLE001 - the report must not fail a finished run.
        logging.warning("report: cannot read the confusion matrix in %s: %s", evaluation_dir, e)
        return (f"<p class='note confusion-missing'>The confusion matrix could not be read from "
                f"<code>{_esc(evaluation_dir)}</code>: {_esc(e)}</p>")
    if counts is None:
        return ("<p class='note confusion-missing'>This evaluation has no "
                "MultiClassConfusionMatrixPlot (run before it was added to the EvalConfig): "
                "no confusion matrix.</p>")
    try:
        png = confusion_png(counts, class_names)
    except ImportError as e:
        return (f"<p class='note confusion-missing'>matplotlib is not installed ({_esc(e)}): "
                "the confusion matrix is not drawn.</p>")
    except Exception as e:  # noqa: BLE001 - a drawing failure must not lose the report.
        logging.warning("Could not draw the confusion matrix: %s", e)
        return (f"<p class='note confusion-missing'>The confusion matrix could not be drawn "
                f"({_esc(e)}).</p>")
    data = base64.b64encode(png).decode("ascii")
    return (f"<img class='confusion' alt='confusion matrix: rows true class, columns predicted "
            f"class' src='data:image/png;base64,{data}'>"
            f"<p class='note'>Rows: true class, columns: predicted class, colour: fraction of "
            f"the row, numbers: example counts ({_count(counts.sum())} examples).</p>")


def _stages_table(stages: dict[str, dict[str, Any]]) -> str:
    """Every stage's top-1 and top-5, and top-1 against the supervised stage where the run
    trained one (in points)."""
    baseline = (stages.get("supervised") or {}).get("top1")
    rows = []
    for name, stage in stages.items():
        top1 = stage.get("top1")
        delta = ("" if baseline is None or top1 is None or name == "supervised"
                 else f"{100 * (top1 - baseline):+.2f}")
        rows.append(f"<tr class='stage-row'><td>{_esc(name)}</td>"
                    f"<td class='num'>{_pct(top1)}</td><td class='num'>{delta}</td>"
                    f"<td class='num'>{_pct(stage.get('top5'))}</td>"
                    f"<td>{_status(stage.get('blessed'), 'blessed', 'not blessed')}</td></tr>")
    return ("<table class='stages'><thead><tr><th>stage</th><th>top-1</th>"
            "<th>vs supervised (points)</th><th>top-5</th><th>blessing</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _stage_section(title: str, summary: dict[str, Any], class_names: list[str],
                   experiment: dict[str, Any] | None, stats: dict[str, Any]) -> str:
    logdir = summary.get("tensorboard_logdir")
    parts = [f"<section class='stage'><h2>{_esc(title)}</h2>"]
    pushed_to = summary.get("pushed_to") if summary.get("pushed") else None
    hub_dir = summary.get("hub_module_dir") if summary.get("hub_pushed") else None
    parts.append(_kv_table([
        ("top-1", f"<span class='top1'>{_pct(summary.get('top1'))}</span>"),
        ("top-5", _pct(summary.get("top5"))),
        ("evaluation examples", _count(summary.get("eval_examples"))),
        ("blessed", _status(summary.get("blessed"), "blessed", "not blessed")),
        ("pushed", _status(summary.get("pushed"), "pushed", "not pushed")
         + (f" to <code>{_esc(pushed_to)}</code>" if pushed_to else "")),
        ("Hub modules", _status(summary.get("hub_pushed"), "published", "not published")
         + (f" to <code>{_esc(hub_dir)}</code>" if hub_dir else "")),
        ("evaluation", f"<code>{_esc(summary.get('evaluation_dir'))}</code>"),
        ("model", f"<code>{_esc(summary.get('model_dir'))}</code>"),
    ]))
    if experiment:
        parts.append("<h3>Experiment</h3>" + _kv_table(_experiment_rows(experiment, stats)))
    parts.append("<h3>Training curves</h3>" + _curves_html(summary))
    parts.append("<h3>Per class</h3>" + _per_class_table(summary, class_names))
    parts.append("<h3>Confusion matrix</h3>" + _confusion_html(summary, class_names))
    parts.append("<h3>TensorBoard</h3>")
    if logdir:
        parts.append(f"<p>Logs: <code>{_esc(logdir)}</code></p>"
                     f"<pre>{_esc('tensorboard --logdir ' + shlex.quote(str(logdir)))}</pre>")
    else:
        parts.append("<p class='note'>No TensorBoard logs recorded.</p>")
    parts.append("</section>")
    return "".join(parts)


def _anomalies_table(anomalies: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{_esc(a['split'])}</td><td>{_esc(a['feature'])}</td>"
        f"<td>{'wrong data' if a['wrong_data'] else 'reported'}</td>"
        f"<td>{_esc(a['description'])}</td></tr>" for a in anomalies)
    return ("<table><tr><th>split</th><th>feature</th><th>kind</th><th>what</th></tr>"
            f"{rows}</table>")


def render_report(summary: dict[str, Any], output_path: str) -> str:
    """Writes the run's HTML report and returns its path.

    Args:
        summary: The dict written to `summary.json` (`run_summary.summarize` plus `experiment`,
            `command`, `wall_time_s`; `stages` {name: stage summary} for multi-stage runs).
        output_path: The HTML file to write (its directory is created).

    Returns:
        `output_path`.
    """
    stats = _load_split_stats(summary)
    class_names = _class_names(summary, stats)
    experiment = summary.get("experiment") or {}
    stages = summary.get("stages") or {}
    title = f"S4L run report: {summary.get('pipeline_name', '')} / {summary.get('model', '')}"
    run_rows = [("pipeline", _esc(summary.get("pipeline_name"))),
                ("stages" if stages else "model",
                 _esc(", ".join(stages) if stages else summary.get("model"))),
                ("splits", _esc(", ".join(f"{k}: {v:,}" for k, v in
                                          (summary.get("splits") or {}).items()) or "n/a")),
                ("rejected records", _esc(summary.get("rejected_records", "n/a"))),
                ("data checks", _esc(run_summary.format_anomalies(
                    summary.get("data_anomalies")).replace("; see summary.json", ""))),
                ("wall time", _esc(f"{summary['wall_time_s']:.1f} s")
                 if summary.get("wall_time_s") is not None else "n/a")]
    body = [f"<h1>{_esc(title)}</h1>", _kv_table(run_rows)]
    if summary.get("stopped"):
        body.append(f"<h3>Stopped</h3><p>{_esc(summary['stopped'])}</p>")
    if summary.get("data_anomalies"):
        body.append("<h3>Data anomalies (ExampleValidator)</h3>" + _anomalies_table(
            summary["data_anomalies"]))
    if summary.get("command"):
        body.append(f"<h3>Command</h3><pre class='command'>{_esc(summary['command'])}</pre>")
    if stages:
        body.append("<h3>Stages side by side</h3>" + _stages_table(stages))
        last = list(stages)[-1]
        for name, stage in stages.items():
            # Only the final stage's experiment is in the summary (beam_runner.py).
            stage_exp = experiment if name == last else None
            body.append(_stage_section(f"Stage {name}", stage, class_names, stage_exp, stats))
    else:
        body.append(_stage_section(f"Model {summary.get('model', '')}", summary, class_names,
                                   experiment, stats))
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + f"<script>{_IMAGES_SCRIPT}</script></body></html>\n")
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as f:
        f.write(page)
    return output_path
