"""The ImageNet presets, unchanged but for batch size and length, on a fake slim-built
ImageNet whose file names come from the paper's real label-map files: converted through
S4LExampleGen with the 1 % map, and registered in place (Importer) once already split with
the 10 % map. ResNet-50 v2 at 224x224 with 1,000 classes, so each run takes minutes."""

import json
import os

import fake_imagenet
import pytest
import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from modules import features
from pipeline import presets
from pipeline.components import imported_examples
from pipeline.components.example_gen import build, sources
from pipeline.runners import local

pytestmark = [pytest.mark.skipif(not os.path.isfile(fake_imagenet.TEN_PERCENT),
                                 reason="needs ../shared/data/imagenet_subsets"),
              pytest.mark.xdist_group("imagenet_e2e")]

# What a CPU test changes of the ImageNet presets; everything else must be the preset's.
CPU_SETTINGS = ["--batch_size", "2", "--eval_batch_size", "4", "--train_epochs", "1",
                "--min_top1", "0"]
CHANGED_FIELDS = {"batch_size", "eval_batch_size", "schedule_epochs", "seed", "num_classes",
                  "num_labelled_examples"}


def _names(split_dir: str) -> dict[str, int]:
    """file name -> label of every record in a split directory."""
    found = {}
    for path in tf.io.gfile.glob(os.path.join(split_dir, "*")):
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            name = feature[features.FILENAME_KEY].bytes_list.value[0].decode()
            found[name] = feature[features.LABEL_KEY].int64_list.value[0]
    return found


def _check_experiment(summary: dict, labels: str) -> None:
    preset = presets.get("supervised", "imagenet", labels).to_dict()
    used = json.loads(json.dumps(summary["experiment"]))
    preset = json.loads(json.dumps(preset))
    assert {k for k in preset if preset[k] != used[k]} <= CHANGED_FIELDS
    assert (used["architecture"], used["image_size"], used["num_classes"]) == (
        "resnet50v2", 224, 1000)
    # What the Trainer recorded is what the command line built, with the epoch length (0:
    # count the labelled split) resolved from the data.
    with open(os.path.join(summary["tensorboard_logdir"], "experiment.json")) as f:
        recorded = json.load(f)["experiment"]
    assert recorded == {**used, "num_labelled_examples": summary["splits"]["labelled"]}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_imagenet.write(str(tmp_path_factory.mktemp("imagenet") / "tfrecords"))


@pytest.fixture(scope="module")
def converted_one_percent(fake, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_percent")
    argv = ["--source", "imagenet_tfrecords", "--data_path", fake.root,
            "--label_map", fake_imagenet.ONE_PERCENT, "--preset", "supervised",
            "--output_dir", str(out), *CPU_SETTINGS]
    assert local.main(argv) == 0
    return json.loads((out / "summary.json").read_text())


def test_one_percent_map_selects_exactly_its_images(fake, converted_one_percent):
    summary = converted_one_percent
    examples_dir = summary["examples_dir"]
    labelled = _names(os.path.join(examples_dir, f"Split-{features.LABELLED_SPLIT}"))
    assert set(labelled) == fake.one_percent and labelled
    # Labels are 0-based synset indices (slim wrote index + 1).
    assert labelled == {name: label for name, label in fake.train if name in fake.one_percent}
    unlabelled = _names(os.path.join(examples_dir, f"Split-{features.UNLABELLED_SPLIT}"))
    assert set(unlabelled) == {name for name, _ in fake.train}
    assert summary["splits"] == {"labelled": len(fake.one_percent),
                                 "unlabelled": len(fake.train), "eval": len(fake.validation)}


def test_one_percent_map_runs_the_one_percent_preset(converted_one_percent):
    summary = converted_one_percent
    _check_experiment(summary, "1pct")
    assert summary["experiment"]["weight_decay"] == 1e-2 and summary["experiment"]["hsvnoise"]
    assert summary["eval_examples"] == 2 * len(fake_imagenet.CLASS_INDICES)
    assert summary["blessed"] is True and summary["pushed"] is True


@pytest.fixture(scope="module")
def imported_ten_percent(fake, tmp_path_factory):
    """The 10 % splits built once (S4LExampleGen's own code), then imported by a pipeline."""
    split_dir = str(tmp_path_factory.mktemp("already_split"))
    source = sources.SlimTFRecordSource(fake.root)
    build.build_splits(source, split_dir,
                       build.SplitOptions(label_map_path=fake_imagenet.TEN_PERCENT))
    before = sorted(os.listdir(split_dir))
    out = tmp_path_factory.mktemp("ten_percent")
    argv = ["--source", "examples", "--data_path", split_dir, "--labels", "10pct",
            "--preset", "supervised", "--output_dir", str(out), *CPU_SETTINGS]
    assert local.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    return {"summary": summary, "split_dir": split_dir, "before": before,
            "after": sorted(os.listdir(split_dir)), "out": out}


def test_import_registers_the_directory_itself(fake, imported_ten_percent):
    run = imported_ten_percent
    summary = run["summary"]
    # The Examples artifact is the user's directory: nothing was copied or added to it.
    assert summary["examples_dir"] == run["split_dir"]
    assert run["after"] == run["before"]
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(run["out"] / "tfx" / "metadata.sqlite")
    store = metadata_store.MetadataStore(config)
    assert store.get_context_by_type_and_name("node", "s4l.S4LExampleGen") is None
    assert store.get_context_by_type_and_name(
        "node", f"s4l.{imported_examples.IMPORTER_ID}") is not None
    labelled = _names(os.path.join(run["split_dir"], f"Split-{features.LABELLED_SPLIT}"))
    assert set(labelled) == fake.ten_percent
    assert summary["splits"]["labelled"] == len(fake.ten_percent)


def test_imported_splits_run_the_ten_percent_preset(imported_ten_percent):
    summary = imported_ten_percent["summary"]
    _check_experiment(summary, "10pct")
    assert summary["experiment"]["weight_decay"] == 1e-3
    assert summary["eval_examples"] == 2 * len(fake_imagenet.CLASS_INDICES)
    assert summary["blessed"] is True and summary["pushed"] is True
    card = os.path.join(summary["hub_module_dir"], "model_card.json")
    with open(card) as f:
        assert json.load(f)["data"]["labelled_examples"] == summary["splits"]["labelled"]
