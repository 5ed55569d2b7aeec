"""HubPusher executor, model card and wiring, on a tiny tf-keras model (no pipeline run)."""

import concurrent.futures
import json
import os
import tarfile
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_model_analysis as tfma
import tf_keras as keras
from google.protobuf import json_format
from tensorflow_hub import compressed_module_resolver
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2
from tfx.types import standard_artifacts

from modules import features
from modules.trainer import export
from pipeline import layout, presets
from pipeline import pipeline as pipeline_lib
from pipeline.components import evaluation_metrics
from pipeline.components.hub_pusher import executor as hub_executor
from pipeline.components.hub_pusher import model_card
from pipeline.components.hub_pusher.component import HubPusher
from pipeline.config import DataConfig

CLASSES = ["cat", "dog", "eel"]
SPLIT_STATS = {
    "source": "image_folder", "classes": CLASSES,
    "selection": {"method": "class_balanced_sample", "labelled_fraction": 0.1, "seed": 0,
                  "exclude_labelled_from_unlabelled": False},
    "splits": {"labelled": {"count": 30}, "unlabelled": {"count": 300},
               "eval": {"count": 90}},
    "rejected": {"count": 0},
}
RUN_RECORD = {"experiment": {"name": "s4l_rotation", "dataset": "synthetic", "labels": "10pct",
                             "losses": {"supervised": 1.0, "rotation": 0.5}, "num_classes": 3,
                             "image_size": 32, "resize_size": 32,
                             "architecture": "resnet_small_v2", "filters_factor": 1},
              "final_eval": {"top1": 0.5}, "final_step": 12, "exported_weights": "final"}


def _tiny_model() -> keras.Model:
    images = keras.Input([None, None, 3])
    x = keras.layers.Conv2D(4, 3, padding="same")(images)
    x = keras.layers.BatchNormalization()(x)
    pre_logits = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    logits = keras.layers.Dense(len(CLASSES))(pre_logits)
    return keras.Model(images, {"classes": logits, "pre_logits": pre_logits})


def _artifact(cls, uri: str, **int_properties: int):
    artifact = cls()
    artifact.uri = uri
    os.makedirs(uri, exist_ok=True)
    for key, value in int_properties.items():
        artifact.set_int_custom_property(key, value)
    return artifact


def _metric(name: str, model_name: str, value: float):
    return metrics_for_slice_pb2.MetricsForSlice.MetricKeyAndValue(
        key=metrics_for_slice_pb2.MetricKey(name=name, model_name=model_name),
        value=metrics_for_slice_pb2.MetricValue(double_value={"value": value}))


def write_tfma_output(uri: str, models: dict[str, tuple[float, float]]) -> None:
    """A TFMA output directory as the Evaluator writes it: `models` maps a model name
    ("" alone, or "candidate" and "baseline") to its overall (top-1, top-5) on 90 examples;
    the label slice of class 0 gets top-1 / 2."""
    names = sorted(models)
    config = config_pb2.EvalConfig(model_specs=[
        config_pb2.ModelSpec(name=name, is_baseline=name == "baseline") for name in names])
    os.makedirs(uri, exist_ok=True)
    with open(os.path.join(uri, "eval_config.json"), "w") as f:
        f.write(json_format.MessageToJson(config_pb2.EvalRun(
            eval_config=config, version=tfma.__version__, data_location="data",
            file_format="tfrecords", model_locations={n: f"/models/{n}" for n in names})))
    overall = metrics_for_slice_pb2.MetricsForSlice(slice_key={})
    per_class = metrics_for_slice_pb2.MetricsForSlice(slice_key={"single_slice_keys": [
        {"column": features.LABEL_KEY, "int64_value": 0}]})
    for name, (top1, top5) in models.items():
        overall.metric_keys_and_values.extend([
            _metric("sparse_categorical_accuracy", name, top1),
            _metric("sparse_top_k_categorical_accuracy", name, top5),
            _metric("example_count", name, 90)])
        per_class.metric_keys_and_values.extend([
            _metric("sparse_categorical_accuracy", name, top1 / 2),
            _metric("example_count", name, 30)])
    with tf.io.TFRecordWriter(os.path.join(uri, "metrics-00000-of-00001.tfrecord")) as writer:
        for record in (overall, per_class):
            writer.write(record.SerializeToString())


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("trainer") / "model")
    keras.utils.set_random_seed(0)
    export.save_hub_modules(_tiny_model(), os.path.join(uri, "Format-Hub"))
    return uri


@pytest.fixture
def inputs(model_uri, tmp_path):
    model_run = _artifact(standard_artifacts.ModelRun, str(tmp_path / "model_run"))
    with open(os.path.join(model_run.uri, "experiment.json"), "w") as f:
        json.dump(RUN_RECORD, f)
    examples = _artifact(standard_artifacts.Examples, str(tmp_path / "examples"))
    with open(os.path.join(examples.uri, features.SPLIT_STATS_FILE), "w") as f:
        json.dump(SPLIT_STATS, f)
    evaluation = _artifact(standard_artifacts.ModelEvaluation, str(tmp_path / "evaluation"))
    write_tfma_output(evaluation.uri, {"candidate": (0.8, 0.95), "baseline": (0.6, 0.9)})
    blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / "blessing"), blessed=1)
    blessing.set_string_custom_property("baseline_model", "/models/baseline")
    return {"model": [_artifact(standard_artifacts.Model, model_uri)],
            "model_blessing": [blessing], "model_run": [model_run],
            "evaluation": [evaluation], "examples": [examples]}


def push(inputs, destination: str, uri: str, tarball: bool = False, blessed: int = 1):
    inputs = dict(inputs)
    blessing = _artifact(standard_artifacts.ModelBlessing, uri + "_blessing", blessed=blessed)
    for given in inputs.get("model_blessing", []):
        blessing.set_string_custom_property(
            "baseline_model", given.get_string_custom_property("baseline_model"))
    inputs["model_blessing"] = [blessing]
    pushed = _artifact(standard_artifacts.PushedModel, uri)
    hub_executor.Executor().Do(
        inputs, {"pushed_model": [pushed]},
        {"destination": destination, "model_name": "s4l_rotation", "tarball": int(tarball)})
    return pushed


def test_versions_increase_and_never_overwrite(inputs, tmp_path):
    destination = str(tmp_path / "hub")
    first = push(inputs, destination, str(tmp_path / "pushed1"))
    model_dir = os.path.join(destination, "s4l_rotation")
    assert first.get_int_custom_property("pushed") == 1
    assert first.get_string_custom_property("pushed_version") == "1"
    assert first.get_string_custom_property("pushed_destination") == os.path.join(model_dir, "1")
    card_1 = os.path.join(model_dir, "1", model_card.CARD_JSON)
    mtime = os.stat(card_1).st_mtime_ns
    second = push(inputs, destination, str(tmp_path / "pushed2"))
    assert second.get_string_custom_property("pushed_version") == "2"
    assert sorted(os.listdir(model_dir)) == ["1", "2"]  # No staging directory left behind.
    assert os.stat(card_1).st_mtime_ns == mtime
    for version in ("1", "2"):
        assert sorted(os.listdir(os.path.join(model_dir, version))) == [
            "classification", "feature_vector", "model_card.json", "model_card.md"]
    # The PushedModel artifact keeps the card.
    with open(os.path.join(second.uri, model_card.CARD_JSON)) as f:
        assert json.load(f)["version"] == "2"


def test_next_version_ignores_non_version_entries(tmp_path):
    for name in ("1", "3", "latest", ".staging-abc", "10.tar.gz"):
        os.makedirs(tmp_path / name)
    (tmp_path / "9").write_text("a file, not a version")
    assert hub_executor.existing_versions(str(tmp_path)) == [1, 3]
    assert hub_executor.next_version(str(tmp_path)) == 4
    assert hub_executor.next_version(str(tmp_path / "missing")) == 1


def test_not_blessed_publishes_nothing(inputs, tmp_path):
    destination = str(tmp_path / "hub")
    pushed = push(inputs, destination, str(tmp_path / "pushed"), blessed=0)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not pushed.has_custom_property("pushed_destination")
    assert not os.path.exists(destination)


def test_interrupted_push_leaves_no_version(inputs, tmp_path, monkeypatch):
    destination = str(tmp_path / "hub")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hub_executor.Executor, "_write_card", staticmethod(fail))
    with pytest.raises(OSError, match="disk full"):
        push(inputs, destination, str(tmp_path / "pushed1"))
    assert os.listdir(os.path.join(destination, "s4l_rotation")) == []
    monkeypatch.undo()
    pushed = push(inputs, destination, str(tmp_path / "pushed2"))
    assert pushed.get_string_custom_property("pushed_version") == "1"


def test_missing_module_fails_before_publishing(inputs, tmp_path):
    inputs = dict(inputs, model=[_artifact(standard_artifacts.Model, str(tmp_path / "empty"))])
    with pytest.raises(FileNotFoundError, match="classification"):
        push(inputs, str(tmp_path / "hub"), str(tmp_path / "pushed"))
    assert not os.path.exists(tmp_path / "hub" / "s4l_rotation" / "1")


def test_model_card(inputs, tmp_path):
    pushed = push(inputs, str(tmp_path / "hub"), str(tmp_path / "pushed"))
    version_dir = pushed.get_string_custom_property("pushed_destination")
    with open(os.path.join(version_dir, model_card.CARD_JSON)) as f:
        card = json.load(f)
    assert card["model_name"] == "s4l_rotation" and card["version"] == "1"
    assert card["method"]["experiment"] == "s4l_rotation"
    assert card["method"]["losses"] == {"supervised": 1.0, "rotation": 0.5}
    assert card["method"]["exported_weights"] == "final"
    assert card["data"]["dataset"] == "synthetic" and card["data"]["num_classes"] == 3
    assert card["data"]["class_names"] == CLASSES
    assert card["data"]["labelled_examples"] == 30 and card["data"]["train_examples"] == 300
    assert card["data"]["labelled_fraction"] == pytest.approx(0.1)
    # The candidate's metrics, not the baseline's.
    assert card["evaluation"]["top1"] == pytest.approx(0.8)
    assert card["evaluation"]["top5"] == pytest.approx(0.95)
    assert card["evaluation"]["examples"] == 90
    assert card["evaluation"]["per_class"]["cat"]["top1"] == pytest.approx(0.4)
    assert card["evaluation"]["baseline_model"] == "/models/baseline"
    assert card["input"]["range"] == [-1.0, 1.0] and card["input"]["image_size"] == 32
    assert card["modules"]["classification"]["output_shape"] == [None, 3]
    assert card["modules"]["feature_vector"]["output_shape"] == [None, 4]
    assert card["source_model"] == inputs["model"][0].uri
    with open(os.path.join(version_dir, model_card.CARD_MARKDOWN)) as f:
        markdown = f.read()
    assert "top-1: 80.00 %" in markdown and "cat, dog, eel" in markdown
    assert f'hub.KerasLayer("{version_dir}/classification")' in markdown


def test_model_card_without_optional_inputs(inputs, tmp_path):
    inputs = {"model": inputs["model"]}
    pushed = push(inputs, str(tmp_path / "hub"), str(tmp_path / "pushed"))
    with open(os.path.join(pushed.get_string_custom_property("pushed_destination"),
                           model_card.CARD_JSON)) as f:
        card = json.load(f)
    assert card["evaluation"]["top1"] is None and card["method"]["losses"] is None
    assert card["evaluation"]["baseline_model"] is None
    assert card["data"]["num_classes"] == 3  # From the module's output shape.


def test_tarball_is_a_hub_compressed_module(inputs, tmp_path, monkeypatch):
    pushed = push(inputs, str(tmp_path / "hub"), str(tmp_path / "pushed"), tarball=True)
    version_dir = pushed.get_string_custom_property("pushed_destination")
    tar_path = os.path.join(version_dir, "classification.tar.gz")
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
    assert "saved_model.pb" in names and "variables" in names
    assert "variables/variables.index" in names and model_card.CARD_MARKDOWN in names
    assert names.index("variables") < names.index("variables/variables.index")
    assert not any(name.startswith(("/", "classification")) for name in names)
    # Unpacked by the resolver hub.KerasLayer uses for gs://.../*.tar.gz, it loads and agrees.
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub_cache"))
    unpacked = compressed_module_resolver.GcsCompressedFileResolver()(tar_path)
    assert unpacked.startswith(str(tmp_path / "hub_cache"))
    images = tf.random.stateless_uniform([2, 8, 8, 3], seed=[1, 2], minval=-1, maxval=1)
    expected = hub.KerasLayer(os.path.join(version_dir, "classification"))(images)
    np.testing.assert_allclose(hub.KerasLayer(unpacked)(images), expected, atol=1e-6)
    assert os.path.isfile(os.path.join(version_dir, "feature_vector.tar.gz"))


@pytest.mark.parametrize("models, expected", [
    ({"": (0.7, 0.9)}, 0.7),
    ({"candidate": (0.8, 0.95), "baseline": (0.6, 0.9)}, 0.8),
])
def test_evaluation_metrics_reads_the_candidate(tmp_path, models, expected):
    write_tfma_output(str(tmp_path), models)
    metrics = evaluation_metrics.evaluation_metrics(str(tmp_path), CLASSES)
    assert metrics["overall"]["top1"] == pytest.approx(expected)
    assert metrics["overall"]["examples"] == 90
    assert metrics["per_class"]["cat"]["top1"] == pytest.approx(expected / 2)


def _pipeline(tmp_path, **kwargs):
    experiments = presets.stages("supervised", dataset="synthetic", labels="10pct")
    return pipeline_lib.create_pipeline(
        pipeline_name="p", pipeline_root=str(tmp_path / "root"),
        data=DataConfig(num_classes=3), experiments=experiments,
        schema_path=layout.SCHEMA_PATH,
        push_destination=str(tmp_path / "serving"), **kwargs)


def test_pipeline_has_a_hub_pusher_per_stage(tmp_path):
    nodes = {c.id: c for c in _pipeline(tmp_path).components}
    hub_pusher = nodes["HubPusher.supervised"]
    assert isinstance(hub_pusher, HubPusher) and "Pusher.supervised" in nodes
    assert hub_pusher.exec_properties == {
        "destination": str(tmp_path / "serving" / "hub"), "model_name": "supervised",
        "tarball": 0}
    assert set(hub_pusher.inputs) == {"model", "model_blessing", "model_run", "evaluation",
                                      "examples"}
    assert hub_pusher.inputs["evaluation"].producer_component_id == "Evaluator.supervised"
    explicit = {c.id: c for c in _pipeline(
        tmp_path, hub_destination="gs://bucket/hub", hub_tarball=True).components}
    assert explicit["HubPusher.supervised"].exec_properties["destination"] == "gs://bucket/hub"
    assert explicit["HubPusher.supervised"].exec_properties["tarball"] == 1


@pytest.mark.parametrize("hub_destination", ["serving", "serving/supervised/hub"])
def test_hub_destination_must_not_mix_with_serving_versions(tmp_path, hub_destination):
    with pytest.raises(ValueError, match="would mix with the serving models"):
        _pipeline(tmp_path, hub_destination=str(tmp_path / hub_destination))


def test_model_card_markdown_escapes_user_strings(inputs, tmp_path):
    """Class, stage and folder names are user data: rendered by a CommonMark renderer (as
    a model hub shows the card), none becomes markup."""
    from markdown_it import MarkdownIt  # CommonMark with raw HTML on, like most renderers

    pushed = push(inputs, str(tmp_path / "hub"), str(tmp_path / "pushed"))
    version_dir = pushed.get_string_custom_property("pushed_destination")
    with open(os.path.join(version_dir, model_card.CARD_JSON)) as f:
        card = json.load(f)
    card["model_name"] = "<b>bold</b>"
    card["data"]["class_names"] = ["<img src=x onerror=alert(1)>", "[a](javascript:alert(1))",
                                   "*x*"]
    card["source_model"] = "/m/`<script>alert(1)</script>"
    card["evaluation"]["baseline_model"] = "/m/<iframe>"
    page = MarkdownIt("commonmark").render(
        model_card.render_markdown(card, "/hub/``` <script>x</script>"))
    for tag in ("<b>", "<img", "<script", "<iframe", "<em>", 'href="javascript'):
        assert tag not in page, tag
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "*x*" in page


@pytest.fixture
def object_store(monkeypatch):
    """Local folders with an object store's rules: no atomic rename, so pushes claim
    versions and mark them complete (the claims stay exclusive creates)."""
    monkeypatch.setattr(hub_executor, "renames_atomically", lambda path: False)


def test_object_store_push_claims_then_marks_the_version_complete(inputs, tmp_path,
                                                                  object_store):
    destination = str(tmp_path / "hub")
    model_dir = os.path.join(destination, "s4l_rotation")
    first = push(inputs, destination, str(tmp_path / "pushed1"))
    second = push(inputs, destination, str(tmp_path / "pushed2"))
    assert [p.get_string_custom_property("pushed_version") for p in (first, second)] == [
        "1", "2"]
    assert sorted(os.listdir(model_dir)) == ["1", "1.claim", "2", "2.claim"]
    assert os.path.exists(os.path.join(model_dir, "2", hub_executor.COMPLETE_MARKER))
    assert hub_executor.published_versions(model_dir) == [1, 2]


def test_object_store_crash_leaves_no_visible_version(inputs, tmp_path, monkeypatch,
                                                     object_store):
    destination = str(tmp_path / "hub")
    model_dir = os.path.join(destination, "s4l_rotation")
    push(inputs, destination, str(tmp_path / "pushed1"))

    def fail(*args, **kwargs):
        raise OSError("connection reset")

    with monkeypatch.context() as patch:
        patch.setattr(hub_executor.Executor, "_write_card", staticmethod(fail))
        with pytest.raises(OSError, match="connection reset"):
            push(inputs, destination, str(tmp_path / "pushed2"))
    # Version 2 is half written (modules, no card, no marker): readers do not see it, and
    # the next push does not reuse its number.
    assert os.path.isdir(os.path.join(model_dir, "2", "classification"))
    assert hub_executor.published_versions(model_dir) == [1]
    third = push(inputs, destination, str(tmp_path / "pushed3"))
    assert third.get_string_custom_property("pushed_version") == "3"
    assert hub_executor.published_versions(model_dir) == [1, 3]


def test_concurrent_claims_get_distinct_versions(tmp_path):
    model_dir = str(tmp_path)

    def claim(_):
        version = hub_executor.next_version(model_dir)
        while not hub_executor.create_if_absent(
                os.path.join(model_dir, f"{version}{hub_executor.CLAIM_SUFFIX}"), "x"):
            version = max(version + 1, hub_executor.next_version(model_dir))
        return version

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(claim, range(16)))
    assert sorted(versions) == list(range(1, 17))


def test_cloud_storage_claims_with_a_generation_precondition(monkeypatch):
    from google.api_core import exceptions
    from google.cloud import storage

    created = {}

    class Blob:
        def __init__(self, name):
            self.name = name

        def upload_from_string(self, content, if_generation_match=None):
            assert if_generation_match == 0  # create only if absent, atomically
            if self.name in created:
                raise exceptions.PreconditionFailed("exists")
            created[self.name] = content

    class Client:
        def bucket(self, name):
            assert name == "bucket"
            return types.SimpleNamespace(blob=Blob)

    monkeypatch.setattr(storage, "Client", Client)
    path = "gs://bucket/hub/s4l_rotation/3.claim"
    assert hub_executor.create_if_absent(path, "a") is True
    assert hub_executor.create_if_absent(path, "b") is False
    assert created == {"hub/s4l_rotation/3.claim": "a"}
    assert not hub_executor.renames_atomically("gs://bucket/hub")
    assert hub_executor.renames_atomically("/local/hub")
