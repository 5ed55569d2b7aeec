"""End to end: the real pipeline under LocalDagRunner on a few hundred generated images."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from hub_consumer import check_fine_tune_one_step, check_logits_match_serving, check_publication
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

import beam_runner
from conftest import class_image, encode, write_image_folder
from modules import features
from pipeline import report

COMPONENTS = ("S4LExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "Transform", "Trainer.supervised", "Evaluator.supervised", "Pusher.supervised",
              "HubPusher.supervised")


def _latest_states(metadata_path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(config)
    states = {}
    for name in COMPONENTS:
        context = store.get_context_by_type_and_name("node", f"s4l.{name}")
        assert context is not None, f"{name} never ran"
        latest = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
        states[name] = metadata_store_pb2.Execution.State.Name(latest.last_known_state)
    return states


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    images = write_image_folder(str(root / "images"), classes=5, train_per_class=48,
                                test_per_class=12)
    out = root / "out"
    argv = ["--source", "image_folder", "--data_path", images, "--dataset", "synthetic",
            "--labelled_fraction", "0.25", "--output_dir", str(out), "--min_top1", "0.0",
            "--train_epochs", "3"]
    assert beam_runner.main(argv) == 0
    first = _latest_states(str(out / "tfx" / "metadata.sqlite"))
    summary = json.loads((out / "summary.json").read_text())
    return {"argv": argv, "out": out, "first": first, "summary": summary}


def test_every_component_ran(pipeline_run):
    assert set(pipeline_run["first"].values()) == {"COMPLETE"}, pipeline_run["first"]


def test_summary(pipeline_run):
    summary = pipeline_run["summary"]
    assert summary["splits"] == {"labelled": 60, "unlabelled": 240, "eval": 60}
    assert summary["eval_examples"] == 60
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0
    assert summary["blessed"] is True and summary["pushed"] is True
    assert len(summary["per_class"]) == 5
    assert os.path.isdir(summary["tensorboard_logdir"])


def test_report_written_with_confusion_matrix(pipeline_run):
    summary = pipeline_run["summary"]
    assert os.path.isfile(summary["report"])
    with open(summary["report"]) as f:
        html = f.read()
    assert "data:image/png;base64," in html
    assert summary["hub_module_dir"] in html
    counts = report.confusion_matrix(summary["evaluation_dir"], 5)
    assert counts.shape == (5, 5) and counts.sum() == summary["eval_examples"]
    # Row sums are the per-class example counts TFMA reported for the label slices.
    assert sorted(counts.sum(axis=1).tolist()) == sorted(
        v["examples"] for v in summary["per_class"].values())


def test_hub_modules_published_and_consumable(pipeline_run):
    summary = pipeline_run["summary"]
    check_publication(summary, 5)
    check_logits_match_serving(summary, 5)
    check_fine_tune_one_step(summary, 5)


def test_pushed_model_loads_and_predicts(pipeline_run):
    pushed = pipeline_run["summary"]["pushed_to"]
    model = tf.saved_model.load(pushed)
    serve = model.signatures["serving_default"]
    examples = [tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[encode(class_image(k, 900 + k, size=(30, 26)), "JPEG")]))
    })).SerializeToString() for k in range(5)]
    out = serve(examples=tf.constant(examples))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (5, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert out["logits"].shape == (5, 5)


def test_hub_modules(pipeline_run):
    hub_dir = os.path.join(pipeline_run["summary"]["model_dir"], "Format-Hub")
    images = tf.random.uniform([2, 32, 32, 3], -1, 1)
    classifier = tf.saved_model.load(os.path.join(hub_dir, "classification"))
    features_module = tf.saved_model.load(os.path.join(hub_dir, "feature_vector"))
    assert classifier(images, training=False).shape == (2, 5)
    # ff=1 small ResNet: block3 has 4 * (4 * ff) * 2**2 = 64 output channels.
    assert features_module(images, training=False).shape == (2, 64)
    assert len(classifier.trainable_variables) > 0


def test_rerun_is_cached(pipeline_run):
    assert beam_runner.main(pipeline_run["argv"]) == 0
    states = _latest_states(str(pipeline_run["out"] / "tfx" / "metadata.sqlite"))
    assert set(states.values()) == {"CACHED"}, states


def test_trainer_change_reruns_only_the_trainer_and_what_follows(pipeline_run):
    assert beam_runner.main([*pipeline_run["argv"], "--set", "weight_decay=0.002"]) == 0
    states = _latest_states(str(pipeline_run["out"] / "tfx" / "metadata.sqlite"))
    upstream = ("S4LExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                "Transform")
    assert {states[name] for name in upstream} == {"CACHED"}, states
    assert {states[name] for name in COMPONENTS if name not in upstream} == {"COMPLETE"}
    # The second blessed model is Hub version 2, and its evaluation, which now also scored the
    # first model as the baseline, still gives the candidate's metrics and confusion matrix.
    summary = json.loads((pipeline_run["out"] / "summary.json").read_text())
    assert os.path.basename(summary["hub_module_dir"]) == "2"
    assert summary["top1"] is not None and len(summary["per_class"]) == 5
    counts = report.confusion_matrix(summary["evaluation_dir"], 5)
    assert counts.sum() == summary["eval_examples"] == 60
