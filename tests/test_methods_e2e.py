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
import tensorflow_transform as tft

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


def _records(methods_run, component: str, split: str) -> list[bytes]:
    root = methods_run["out"] / "tfx" / component
    files = sorted(tf.io.gfile.glob(str(root / "*" / "*" / f"Split-{split}" / "*")))
    assert files, (component, split)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [record.numpy() for record in dataset]


def test_pseudo_logits_are_the_labellers_upright_prediction(methods_run):
    # pseudo_labels (pseudo_label_views "upright", the default) took supervised's
    # serving_default logits for each example it labelled.
    labelled = _records(methods_run, "BulkInferrer.pseudo_labels", "eval")[:6]
    appended = [tf.train.Example.FromString(r).features.feature[features.PSEUDO_LOGITS_KEY]
                .float_list.value for r in labelled]
    serving = tf.saved_model.load(methods_run["summary"]["stages"]["supervised"]["pushed_to"])
    original = _records(methods_run, "S4LExampleGen", "eval")
    by_image = {tf.train.Example.FromString(r).features.feature[features.FILENAME_KEY]
                .bytes_list.value[0]: r for r in original}
    names = [tf.train.Example.FromString(r).features.feature[features.FILENAME_KEY]
             .bytes_list.value[0] for r in labelled]
    logits = serving.signatures[features.SERVING_SIGNATURE](
        examples=tf.constant([by_image[name] for name in names]))["logits"]
    np.testing.assert_allclose(np.array(appended), logits.numpy(), rtol=1e-4, atol=1e-4)


def test_averaged_views_signature_averages_the_views_the_classifier_trained_on(methods_run):
    # MOAM step 1 trained its classifier on both mirror images and all four turns.
    stage = methods_run["summary"]["stages"]["moam_step_1"]
    examples = tf.constant(_records(methods_run, "S4LExampleGen", "eval")[:6])
    serving = tf.saved_model.load(stage["pushed_to"])
    averaged = serving.signatures[features.AVERAGED_VIEWS_SIGNATURE](examples=examples)
    (transform_dir,) = tf.io.gfile.glob(
        str(methods_run["out"] / "tfx" / "Transform" / "transform_graph" / "*"))
    output = tft.TFTransformOutput(transform_dir)
    raw = tf.io.parse_example(examples, {features.IMAGE_KEY: output.raw_feature_spec()[
        features.IMAGE_KEY]})
    images = output.transform_raw_features(raw)[features.TRANSFORMED_IMAGE_KEY]
    module = tf.saved_model.load(os.path.join(stage["hub_module_dir"], "classification"))
    per_view = np.stack([module(tf.image.rot90(view, k), False).numpy()
                         for view in (images, tf.image.flip_left_right(images))
                         for k in range(4)])
    assert np.ptp(per_view, axis=0).max() > 1e-3  # the views do disagree: the check is real
    np.testing.assert_allclose(averaged["logits"].numpy(), per_view.mean(axis=0),
                               rtol=1e-4, atol=1e-4)


def test_pseudo_label_views_benchmark_agrees_with_the_bulk_inferrer(methods_run):
    from benchmarks import pseudo_label_views

    rows = {row["views"]: row for row in pseudo_label_views.measure(
        str(methods_run["out"]), "moam_step_1")}
    assert rows["mirror pair x four turns"]["is_averaged_views"] == "yes"
    assert [rows[v]["count"] for v in pseudo_label_views.VIEW_SETS] == [1, 2, 4, 8]
    # moam_step_2 (upright views) trained on the argmax of these logits.
    labelled = [tf.train.Example.FromString(r).features.feature for r in _records(
        methods_run, "BulkInferrer.moam_step_2", "unlabelled")]
    right = [np.argmax(f[features.PSEUDO_LOGITS_KEY].float_list.value)
             == f[features.LABEL_KEY].int64_list.value[0] for f in labelled]
    assert rows["upright"]["images"] == len(right) == 96
    assert rows["upright"]["top1"] == round(100 * np.mean(right), 2)
