"""The run report: confusion matrix from a real TFMA output, HTML content, headless Chromium."""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from PIL import Image
from tensorflow_model_analysis.proto import metrics_for_slice_pb2

from modules import features
from pipeline.components import evaluation_metrics
from pipeline.reporting import curves, report, run_summary

# Label order (not alphabetical: run_summary sorts per_class by name), with HTML specials.
CLASSES = ["shirt & top", "bag", "<coat>"]
# counts[true, predicted]; asymmetric, so a transposed or mis-sliced read fails.
EXPECTED = np.array([[5, 1, 0],
                     [0, 3, 2],
                     [4, 0, 1]], np.float64)


def _eval_config(with_plot: bool = True) -> tfma.EvalConfig:
    metrics = [tfma.MetricConfig(class_name="ExampleCount"),
               tfma.MetricConfig(class_name="SparseCategoricalAccuracy"),
               tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy", config='"k": 2')]
    if with_plot:
        metrics.append(tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key=features.LABEL_KEY, prediction_key="probabilities")],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
        # Per-class slices as in the pipeline: their partial matrices must not be picked.
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])])


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """A real TFMA output (analyze_raw_data, no model, no pipeline) and a summary of it."""
    root = tmp_path_factory.mktemp("report")
    labels, probabilities = [], []
    for true in range(3):
        for predicted in range(3):
            for _ in range(int(EXPECTED[true, predicted])):
                labels.append(true)
                # No ties: the runner-up is predicted - 1, so top-2 is always right here.
                scores = {predicted: 0.7, (predicted + 2) % 3: 0.2, (predicted + 1) % 3: 0.1}
                probabilities.append([scores[c] for c in range(3)])
    frame = pd.DataFrame({features.LABEL_KEY: labels, "probabilities": probabilities})
    evaluation_dir = str(root / "evaluation")
    tfma.analyze_raw_data(frame, _eval_config(), output_path=evaluation_dir)
    stats_path = str(root / features.SPLIT_STATS_FILE)
    with open(stats_path, "w") as f:
        json.dump({"classes": CLASSES, "selection": {"labelled_fraction": 0.1}}, f)
    metrics = evaluation_metrics.evaluation_metrics(evaluation_dir, CLASSES)
    summary = {
        "pipeline_name": "s4l", "model": "vat", "splits": {"labelled": 30, "eval": 16},
        "rejected_records": 0, "split_stats": stats_path,
        "top1": metrics["overall"]["top1"], "top5": metrics["overall"]["top5"],
        "eval_examples": metrics["overall"]["examples"], "per_class": metrics["per_class"],
        "evaluation_dir": evaluation_dir, "blessed": True, "pushed": True,
        "pushed_to": "/srv/models/vat/17", "tensorboard_logdir": "/runs/x/Trainer.vat/model_run/6",
        "model_dir": "/runs/x/Trainer.vat/model/6", "wall_time_s": 12.5,
        "experiment": {"name": "vat", "losses": {"supervised": 1.0, "vat": 0.5},
                       "batch_size": 64, "unsup_batch_mult": 1.0,
                       "schedule_epochs": [0.5, 5.0, 6.0, 7.0, 7.0], "num_classes": 3},
        "command": "beam_runner.py --preset vat --labelled_fraction 0.1",
    }
    return root, evaluation_dir, summary


def _rows(page: str) -> list[list[str]]:
    rows = re.findall(r"<tr class='class-row'>(.*?)</tr>", page)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]


def test_confusion_matrix_reads_the_overall_slice(evaluation):
    _, evaluation_dir, _ = evaluation
    counts = report.confusion_matrix(evaluation_dir, 3)
    np.testing.assert_array_equal(counts, EXPECTED)


def test_confusion_matrix_picks_the_candidate_next_to_a_baseline(evaluation, tmp_path):
    """With a baseline TFMA keys plots by model name ("candidate"/"baseline")."""
    _, evaluation_dir, _ = evaluation
    copy = str(tmp_path / "evaluation")
    shutil.copytree(evaluation_dir, copy)
    with open(os.path.join(copy, "eval_config.json")) as f:
        run = json.load(f)
    spec = run["evalConfig"]["modelSpecs"][0]
    run["evalConfig"]["modelSpecs"] = [dict(spec, name="candidate"),
                                       dict(spec, name="baseline", isBaseline=True)]
    with open(os.path.join(copy, "eval_config.json"), "w") as f:
        json.dump(run, f)
    plots_file = next(n for n in os.listdir(copy) if n.startswith("plots"))
    path = os.path.join(copy, plots_file)
    records = []
    for raw in tf.compat.v1.io.tf_record_iterator(path):
        plots = metrics_for_slice_pb2.PlotsForSlice.FromString(raw)
        for kv in list(plots.plot_keys_and_values):
            kv.key.model_name = "candidate"
            baseline = plots.plot_keys_and_values.add()
            baseline.CopyFrom(kv)
            baseline.key.model_name = "baseline"
            for matrix in baseline.value.multi_class_confusion_matrix_at_thresholds.matrices:
                for entry in matrix.entries:
                    entry.num_weighted_examples += 100
        records.append(plots.SerializeToString())
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    np.testing.assert_array_equal(report.confusion_matrix(copy, 3), EXPECTED)


def test_report_content(evaluation, tmp_path):
    _, _, summary = evaluation
    path = report.render_report(summary, str(tmp_path / "out" / "report.html"))
    assert path == str(tmp_path / "out" / "report.html")
    with open(path, encoding="utf-8") as f:
        page = f.read()
    # 9 of 16 right overall; rows in label order (not run_summary's name order), escaped.
    assert "<span class='top1'>56.25 %</span>" in page and "<td>100.00 %</td>" in page
    assert _rows(page) == [
        ["0", "shirt &amp; top", "83.33 %", "100.00 %", "6"],
        ["1", "bag", "60.00 %", "100.00 %", "5"],
        ["2", "&lt;coat&gt;", "20.00 %", "100.00 %", "5"],
    ]
    assert "<coat>" not in page
    assert "tensorboard --logdir /runs/x/Trainer.vat/model_run/6" in page
    assert "beam_runner.py --preset vat --labelled_fraction 0.1" in page
    assert "supervised x 1, vat x 0.5" in page and "10 %" in page
    assert "64 labelled + 64 unlabelled" in page
    assert "/srv/models/vat/17" in page and "confusion-missing" not in page
    # The embedded image is a real PNG.
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 1
    image = Image.open(io.BytesIO(base64.b64decode(images[0])))
    assert image.format == "PNG" and image.size[0] > 200


def test_report_without_confusion_plot_and_with_stages(evaluation, tmp_path):
    _, evaluation_dir, summary = evaluation
    old = str(tmp_path / "old_evaluation")  # a run from before the plot was configured
    shutil.copytree(evaluation_dir, old, ignore=shutil.ignore_patterns("plots*"))
    assert report.confusion_matrix(old, 3) is None
    first = dict(summary, model="supervised", evaluation_dir=old, blessed=False, pushed=False)
    staged = dict(summary, stages={"supervised": first, "vat": summary})
    with open(report.render_report(staged, str(tmp_path / "r.html")), encoding="utf-8") as f:
        page = f.read()
    assert page.count("<section class='stage'>") == 2
    assert "Stage supervised" in page and "Stage vat" in page
    assert "no MultiClassConfusionMatrixPlot" in page
    assert page.count("data:image/png;base64,") == 1
    assert "not blessed" in page and len(_rows(page)) == 6


def _chromium_dom(path: str) -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run ./setup.sh (it apt-installs Debian's "
                    "chromium) or apt-get install -y chromium")
    result = subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=5000",
         "--dump-dom", f"file://{os.path.abspath(path)}"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_report_renders_in_headless_chromium(evaluation, tmp_path):
    _, _, summary = evaluation
    path = report.render_report(summary, str(tmp_path / "report.html"))
    dom = _chromium_dom(path)
    assert 'data-images-loaded="true"' in dom and 'data-image-count="1"' in dom
    assert dom.count('<tr class="class-row">') == 3 and "&lt;coat&gt;" in dom
    # The check can fail: the same page with a corrupt PNG reports a broken image.
    with open(path, encoding="utf-8") as f:
        page = f.read()
    broken = str(tmp_path / "broken.html")
    with open(broken, "w", encoding="utf-8") as f:
        f.write(page.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAAA"))
    assert 'data-images-loaded="false"' in _chromium_dom(broken)


def test_report_draws_training_curves_and_the_lr_training_used(evaluation, tmp_path):
    _, _, summary = evaluation
    logdir = tmp_path / "model_run"
    logdir.mkdir()
    record = {"train_history": {"total_loss": [2.0, 1.5, 1.0, 0.8],
                                "supervised_loss": [2.0, 1.4, 0.9, 0.7],
                                "top1": [0.3, 0.5, 0.7, 0.8], "lr": [0.05, 0.04, 0.02, 0.0]},
              "eval_history": {"val_top1": [0.6, 0.75]}, "eval_every_rounds": 2}
    (logdir / "experiment.json").write_text(json.dumps(record))
    summary = dict(summary, tensorboard_logdir=str(logdir),
                   experiment=dict(summary["experiment"], lr=0.1, lr_scale_batch_size=128))
    with open(report.render_report(summary, str(tmp_path / "report.html"))) as f:
        page = f.read()
    images = re.findall(r"class='curves' alt='[^']*' src='data:image/png;base64,([A-Za-z0-9+/=]+)'",
                        page)
    assert len(images) == 1
    assert Image.open(io.BytesIO(base64.b64decode(images[0]))).format == "PNG"
    assert "0.05 (lr 0.1 per 128 images, batch 64)" in page
    assert curves.eval_rounds(record, 2, 4) == [2, 4]
    assert curves.eval_rounds({}, 2, 4) == [2, 4]


def test_summary_lines_write_counts_as_counts():
    text = run_summary.format_summary({"splits": {"labelled": 600, "eval": 10000},
                                       "rejected_records": 0, "eval_examples": 10000.0,
                                       "top1": 0.8, "top5": 0.99})
    assert "labelled 600, eval 10,000  (rejected records: 0)" in text
    assert "on 10,000 images" in text and "10000.0" not in text


def test_stages_side_by_side_with_the_supervised_baseline(evaluation, tmp_path):
    _, _, summary = evaluation
    supervised = dict(summary, model="supervised", top1=0.5)
    staged = dict(summary, stages={"supervised": supervised, "vat": dict(summary, top1=0.5625)})
    with open(report.render_report(staged, str(tmp_path / "r.html")), encoding="utf-8") as f:
        page = f.read()
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row)
            for row in re.findall(r"<tr class='stage-row'>(.*?)</tr>", page)]
    assert [row[:3] for row in rows] == [["supervised", "50.00 %", ""],
                                         ["vat", "56.25 %", "+6.25"]]
