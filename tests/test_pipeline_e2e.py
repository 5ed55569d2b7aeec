"""End to end: the real pipeline under LocalDagRunner on 240 generated images of 4 colours.

The data is easy on purpose (a small network separates it within seconds), so the run keeps
the default blessing gate and must reach a top-1 far above chance: a broken label path fails
it. Later runs reuse the pipeline root (ExampleGen, StatisticsGen and Transform cached) to
check caching, re-training and the blessing gate both ways.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from hub_consumer import check_fine_tune_one_step, check_logits_match_serving, check_publication
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from conftest import class_image, colour_image, encode, write_image_folder
from modules import features
from pipeline.reporting import report
from pipeline.runners import local

pytestmark = pytest.mark.xdist_group("pipeline_e2e")

COMPONENTS = ("S4LExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "S4LDataGate", "Transform", "Trainer.supervised", "Evaluator.supervised",
              "Pusher.supervised", "HubPusher.supervised")


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
    images = write_image_folder(str(root / "images"), classes=4, train_per_class=48,
                                test_per_class=12, image=colour_image)
    out = root / "out"
    # 48 labelled images, 3 steps an epoch: 60 steps at base LR 0.1 (lr scaled at batch 16).
    # Batch-norm momentum 0.9: with the preset's 0.98, 30 % of the moving statistics would
    # still be their initial values after 60 steps, and the evaluation (inference mode) would
    # hang on the order the images came in (one class at chance in one order, none in another).
    argv = ["--source", "image_folder", "--data_path", images, "--dataset", "synthetic",
            "--labelled_fraction", "0.25", "--output_dir", str(out), "--train_epochs", "20",
            "--set", "lr_scale_batch_size=16", "--set", "bn_momentum=0.9"]
    assert local.main(argv) == 0
    first = _latest_states(str(out / "tfx" / "metadata.sqlite"))
    summary = json.loads((out / "summary.json").read_text())
    return {"argv": argv, "out": out, "first": first, "summary": summary}


def _rerun(run: dict, name: str, *extra: str) -> dict:
    """The first run's command in the same pipeline root and push destination, with `extra`
    flags; its summary goes to a folder of its own. Returns that summary."""
    out = run["out"].parent / name
    argv = [*run["argv"], "--output_dir", str(out),
            "--pipeline_root", str(run["out"] / "tfx"),
            "--push_destination", str(run["out"] / "serving_model"), *extra]
    assert local.main(argv) == 0
    return json.loads((out / "summary.json").read_text())


def _versions(directory) -> list[str]:
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_every_component_ran(pipeline_run):
    assert set(pipeline_run["first"].values()) == {"COMPLETE"}, pipeline_run["first"]


def test_summary(pipeline_run):
    summary = pipeline_run["summary"]
    assert summary["splits"] == {"labelled": 48, "unlabelled": 192, "eval": 48}
    assert summary["eval_examples"] == 48
    assert summary["data_anomalies"] == []  # the converter's records match the schema
    # Chance is 0.25; the default gate (--min_top1 0.5) blessed it.
    assert summary["top1"] >= 0.9, summary["top1"]
    assert summary["blessed"] is True and summary["pushed"] is True
    assert len(summary["per_class"]) == 4
    assert os.path.isdir(summary["tensorboard_logdir"])


def test_report_written_with_confusion_matrix(pipeline_run):
    summary = pipeline_run["summary"]
    assert os.path.isfile(summary["report"])
    with open(summary["report"]) as f:
        html = f.read()
    assert "data:image/png;base64," in html
    assert summary["hub_module_dir"] in html
    counts = report.confusion_matrix(summary["evaluation_dir"], 4)
    assert counts.shape == (4, 4) and counts.sum() == summary["eval_examples"]
    # Row sums are the per-class example counts TFMA reported for the label slices.
    assert sorted(counts.sum(axis=1).tolist()) == sorted(
        v["examples"] for v in summary["per_class"].values())


def test_hub_modules_published_and_consumable(pipeline_run):
    summary = pipeline_run["summary"]
    check_publication(summary, 4)
    check_logits_match_serving(summary, 4)
    check_fine_tune_one_step(summary, 4)


def test_pushed_model_loads_and_predicts(pipeline_run):
    pushed = pipeline_run["summary"]["pushed_to"]
    model = tf.saved_model.load(pushed)
    serve = model.signatures["serving_default"]
    examples = [tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[encode(class_image(k, 900 + k, size=(30, 26)), "JPEG")]))
    })).SerializeToString() for k in range(4)]
    out = serve(examples=tf.constant(examples))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (4, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert out["logits"].shape == (4, 4)


def test_served_model_scores_the_eval_split_as_the_evaluator_did(pipeline_run):
    """The pushed Format-Serving, fed the eval split's serialized tf.Examples, gives the
    top-1 that TFMA reported."""
    summary = pipeline_run["summary"]
    serve = tf.saved_model.load(summary["pushed_to"]).signatures["serving_default"]
    files = tf.io.gfile.glob(os.path.join(summary["examples_dir"], "Split-eval", "*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    labels = np.array([tf.train.Example.FromString(r).features.feature[features.LABEL_KEY]
                       .int64_list.value[0] for r in records])
    predicted = serve(examples=tf.constant(records))["probabilities"].numpy().argmax(axis=1)
    assert len(records) == summary["eval_examples"]
    assert float(np.mean(predicted == labels)) == pytest.approx(summary["top1"], abs=1e-6)


def test_hub_modules(pipeline_run):
    hub_dir = os.path.join(pipeline_run["summary"]["model_dir"], "Format-Hub")
    images = tf.random.uniform([2, 32, 32, 3], -1, 1)
    classifier = tf.saved_model.load(os.path.join(hub_dir, "classification"))
    features_module = tf.saved_model.load(os.path.join(hub_dir, "feature_vector"))
    assert classifier(images, training=False).shape == (2, 4)
    # ff=1 CIFAR ResNet: block3 has (4 * ff) * 2**2 = 16 output channels.
    assert features_module(images, training=False).shape == (2, 16)
    assert len(classifier.trainable_variables) > 0


def test_rerun_is_cached(pipeline_run):
    assert local.main(pipeline_run["argv"]) == 0
    states = _latest_states(str(pipeline_run["out"] / "tfx" / "metadata.sqlite"))
    assert set(states.values()) == {"CACHED"}, states


def test_trainer_change_reruns_only_the_trainer_and_what_follows(pipeline_run):
    # Any drop is allowed: this checks what re-runs, not the gate (tests below do).
    assert local.main([*pipeline_run["argv"], "--set", "weight_decay=0.002",
                       "--max_top1_drop", "1.0"]) == 0
    states = _latest_states(str(pipeline_run["out"] / "tfx" / "metadata.sqlite"))
    upstream = ("S4LExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                "S4LDataGate", "Transform")
    assert {states[name] for name in upstream} == {"CACHED"}, states
    assert {states[name] for name in COMPONENTS if name not in upstream} == {"COMPLETE"}
    # The second blessed model is Hub version 2, and its evaluation, which now also scored the
    # first model as the baseline, still gives the candidate's metrics and confusion matrix.
    summary = json.loads((pipeline_run["out"] / "summary.json").read_text())
    assert os.path.basename(summary["hub_module_dir"]) == "2"
    assert summary["blessed"] is True and len(summary["per_class"]) == 4
    counts = report.confusion_matrix(summary["evaluation_dir"], 4)
    assert counts.sum() == summary["eval_examples"] == 48


# A model that learns nothing: LR 1e-9 leaves it at its random start (top-1 near 0.25).
UNTRAINED = ("--set", "lr=1e-9")


def test_model_under_min_top1_is_neither_blessed_nor_pushed_nor_published(pipeline_run):
    serving = pipeline_run["out"] / "serving_model" / "supervised"
    hub = pipeline_run["out"] / "serving_model" / "hub" / "supervised"
    before = (_versions(serving), _versions(hub))
    # The value threshold alone: any drop against the previous model is allowed.
    # A floor of 0.8: chance is 0.25, but a random start can reach 0.5 on these easy images.
    summary = _rerun(pipeline_run, "under_min_top1", *UNTRAINED, "--max_top1_drop", "1.0",
                     "--min_top1", "0.8")
    assert summary["top1"] < 0.8
    assert summary["blessed"] is False and summary["pushed"] is False
    assert not summary.get("hub_pushed")
    assert (_versions(serving), _versions(hub)) == before


def test_model_that_drops_against_the_previous_blessed_one_is_not_pushed(pipeline_run):
    serving = pipeline_run["out"] / "serving_model" / "supervised"
    before = _versions(serving)
    # The change threshold alone: no minimum top-1, the default 0.01 drop allowed.
    summary = _rerun(pipeline_run, "dropped", *UNTRAINED, "--min_top1", "0")
    assert summary["top1"] < pipeline_run["summary"]["top1"] - 0.01
    assert summary["blessed"] is False and summary["pushed"] is False
    assert _versions(serving) == before
