"""End to end: every S4L method as a stage of one pipeline, on generated images.

One run trains supervised, S4L-Rotation, S4L-Exemplar, VAT, VAT+EntMin, pseudo-labels
(BulkInferrer + a second Trainer), MOAM steps 1-3 and FixMatch-style consistency, sharing
ExampleGen and Transform; every stage's model goes through its Evaluator and Pusher.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_image_folder
from modules import features
from pipeline.runners import local

PRESETS = ("supervised,s4l_rotation,s4l_exemplar,vat,vat_entmin,pseudo_labels,moam_step_3,"
           "fixmatch")
pytestmark = pytest.mark.xdist_group("methods_e2e")

STAGES = ("supervised", "s4l_rotation", "s4l_exemplar", "vat", "vat_entmin", "pseudo_labels",
          "moam_step_1", "moam_step_2", "moam_step_3", "fixmatch")


@pytest.fixture(scope="module")
def methods_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    images = write_image_folder(str(root / "images"), classes=4, train_per_class=24,
                                test_per_class=6)
    out = root / "out"
    argv = ["--source", "image_folder", "--data_path", images, "--dataset", "synthetic",
            "--labelled_fraction", "0.34", "--output_dir", str(out), "--min_top1", "0.0",
            "--train_epochs", "1", "--preset", PRESETS, "--set", "triplet_embed_dim=16"]
    assert local.main(argv) == 0
    return {"out": out, "summary": json.loads((out / "summary.json").read_text())}


def test_every_stage_trained_evaluated_and_pushed(methods_run):
    stages = methods_run["summary"]["stages"]
    assert list(stages) == list(STAGES)
    for name, stage in stages.items():
        assert stage["eval_examples"] == 24, name
        assert 0.0 <= stage["top1"] <= stage["top5"] <= 1.0, name
        assert stage["pushed"] is True, name
        assert stage["pushed_to"].startswith(str(methods_run["out"] / "serving_model" / name))


def _record(summary, name):
    path = os.path.join(summary["stages"][name]["tensorboard_logdir"], "experiment.json")
    with open(path) as f:
        return json.load(f)


def test_each_method_logged_its_terms(methods_run):
    summary = methods_run["summary"]
    for name in STAGES:
        record = _record(summary, name)
        assert record["experiment"]["name"] == name
        assert record["final_step"] > 0
        # Every loss term of the method was computed and logged, finite, each epoch.
        terms = {f"{term}_loss" for term in record["experiment"]["losses"]}
        history = record["train_history"]
        assert terms | {"total_loss"} <= set(history), (name, sorted(history))
        assert all(np.all(np.isfinite(history[t])) and history[t] for t in terms), name
    exemplar = _record(summary, "s4l_exemplar")["experiment"]
    assert exemplar["exemplar_identity"] == "source_image"
    assert _record(summary, "moam_step_1")["exported_weights"] == "polyak_average"
    assert _record(summary, "vat")["exported_weights"] == "final"
    # Rotation models report the rotation-averaged accuracy too.
    assert "rot_avg_top1" in _record(summary, "s4l_rotation")["final_eval"]


def test_pseudo_label_stages_train_on_every_training_image(methods_run):
    summary = methods_run["summary"]
    steps = _record(summary, "pseudo_labels")["final_step"]
    assert steps == 96 // 16  # one epoch over all 96 training images at batch 16
    labelled = summary["stages"]["supervised"]["splits"]["labelled"]
    assert _record(summary, "supervised")["final_step"] == labelled // 16


def test_bulk_inferrer_appended_pseudo_logits(methods_run):
    root = methods_run["out"] / "tfx" / "BulkInferrer.pseudo_labels" / "output_examples"
    files = tf.io.gfile.glob(str(root / "*" / "Split-unlabelled" / "*"))
    assert files
    record = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP")))
    example = tf.train.Example.FromString(record.numpy())
    logits = example.features.feature[features.PSEUDO_LOGITS_KEY].float_list.value
    assert len(logits) == 4 and np.all(np.isfinite(logits))
