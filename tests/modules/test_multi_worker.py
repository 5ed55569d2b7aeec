"""Multi-worker training (strategy multi_worker): two worker processes on 127.0.0.1 train
one model, as the replicas of a Vertex job do; a kill of one worker followed by a restart of
the job resumes from the last backup; the result is that of one process training the same
two replicas on the same global batches; only the chief writes the model and
experiment.json."""

import functools
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from conftest import REPO, colour_image, encode
from modules import features
from modules.trainer import experiment, export, training
from modules.transform import preprocessing

pytestmark = pytest.mark.xdist_group("multi_worker")

JOB_SCRIPT = os.path.join(REPO, "tests", "multi_worker_job.py")
CLASSES = 4
COUNTS = {features.LABELLED_SPLIT: 64, features.UNLABELLED_SPLIT: 32, features.EVAL_SPLIT: 32}
# 64 labelled images at batch 16: 4 steps per labelled epoch; 4 epochs in 4 rounds.
EXP = experiment.for_dataset("synthetic").replace(
    num_classes=CLASSES, batch_size=16, schedule_epochs=(1, 4), eval_every_epochs=2,
    checkpoint_every_epochs=2, polyak_averaging=True, polyak_half_life_steps=10,
    precision="float32", strategy="multi_worker")
TOTAL_STEPS = 16
# The reference: one process with two replicas (strategy "mirrored" on two logical CPU
# devices) on the same global batches. Batch normalisation then normalises the same halves
# with the same statistics, so the two runs compute the same steps; only the order of
# floating-point sums may differ. (Against one replica the weights differ by 1-3 % from the
# per-replica batch statistics alone, as much as from a worker training on the wrong share
# of the data: too loose to check the sharing.)
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory):
    """An Examples-like folder (three GZIP TFRecord splits and split_stats.json) and the
    Transform graph of the synthetic data set."""
    root = tmp_path_factory.mktemp("multi_worker")
    examples = root / "examples"
    stats = {"splits": {}}
    for index, (split, count) in enumerate(COUNTS.items()):
        os.makedirs(examples / f"Split-{split}")
        with tf.io.TFRecordWriter(str(examples / f"Split-{split}" / "data.gz"),
                                  options="GZIP") as writer:
            for i in range(count):
                label = i % CLASSES
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[encode(colour_image(label, index * 1000 + i), "PNG")])),
                    features.LABEL_KEY: tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[label])),
                })).SerializeToString())
        stats["splits"][split] = {"count": count}
    (examples / features.SPLIT_STATS_FILE).write_text(json.dumps(stats))
    transform_dir = str(root / "transform_graph")
    raw_spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
                features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    config = {"image_size": EXP.image_size, "resize_size": EXP.resize_size,
              "image_fit": EXP.image_fit}
    one = {features.IMAGE_KEY: [encode(colour_image(0, 0), "PNG")], features.LABEL_KEY: [0]}
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(root / "tft_tmp")):
        transform_fn = ((pipeline | beam.Create([one]), metadata)
                        | tft_beam.AnalyzeDataset(functools.partial(
                            preprocessing.preprocessing_fn, custom_config=config)))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # As TFX's Transform component: the raw schema beside the graph (serving parses with it).
    metadata_io.write_metadata(
        metadata, os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return str(examples), transform_dir


def _job(out, examples, transform_dir, exp):
    """JOB.json of tests/multi_worker_job.py: one Trainer execution's FnArgs."""
    job = {"train_files": [os.path.join(examples, f"Split-{s}", "*")
                           for s in features.SPLITS[:2]],
           "eval_files": [os.path.join(examples, f"Split-{features.EVAL_SPLIT}", "*")],
           "transform_output": transform_dir,
           "serving_model_dir": os.path.join(out, "Trainer", "model", "Format-Serving"),
           "custom_config": {"experiment": exp.to_dict()}}
    path = os.path.join(out, "job.json")
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(job, f)
    return path


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(job, model_run_dir, logs):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(f"{logs}-{index}.log", "w")  # noqa: SIM115 (closed by the caller)
        workers.append((subprocess.Popen(
            [sys.executable, JOB_SCRIPT, job, model_run_dir], env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True), log))
    return workers


def _wait(workers, timeout):
    deadline = time.time() + timeout
    for process, log in workers:
        process.wait(max(1, deadline - time.time()))
        log.close()
    return [process.returncode for process, _ in workers]


def _kill(workers):
    for process, log in workers:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


def _record(model_run_dir):
    with open(os.path.join(model_run_dir, features.RUN_RECORD_FILE)) as f:
        return json.load(f)


def _weights(out):
    reader = tf.train.load_checkpoint(export.weights_prefix(
        os.path.join(out, "Trainer", "model", "Format-Serving")))
    values = {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}
    return {key: value for key, value in values.items()
            if isinstance(value, np.ndarray) and value.dtype == np.float32}


def test_two_workers_resume_after_a_kill_and_match_one_worker(job_inputs, tmp_path):
    examples, transform_dir = job_inputs
    out = str(tmp_path / "two")
    job = _job(out, examples, transform_dir, EXP)
    run_dirs = [os.path.join(out, "Trainer", "model_run", str(k)) for k in (1, 2)]

    # The first attempt: worker 1 is killed once the chief has backed up a round; the
    # chief, which can no longer train alone, is stopped too (a Vertex job fails whole).
    started = time.time()
    first = _start_workers(job, run_dirs[0], str(tmp_path / "first"))
    backup = os.path.join(out, "Trainer", "resume", "*", "chief", "checkpoint")
    deadline = time.time() + 400
    while not glob.glob(backup) and first[0][0].poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(first[1][0].pid, signal.SIGKILL)
    _kill(first)
    chief_log = (tmp_path / "first-0.log").read_text()
    assert glob.glob(backup), "no backup before the deadline:\n" + chief_log[-3000:]
    backed_up = training.rounds_in_backup(os.path.dirname(os.path.dirname(glob.glob(backup)[0])))
    assert 1 <= backed_up < 4, chief_log[-3000:]

    # The job started again: every worker resumes from the chief's backup.
    print(f"first attempt killed after {time.time() - started:.0f} s", flush=True)
    second = _start_workers(job, run_dirs[1], str(tmp_path / "second"))
    codes = _wait(second, 600)
    logs = [(tmp_path / f"second-{k}.log").read_text() for k in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    for log in logs:
        epochs = [int(e) for e in re.findall(r"^Epoch (\d+)/4$", log, re.MULTILINE)]
        assert epochs[0] == backed_up + 1 and epochs[-1] == 4, (backed_up, epochs)
        assert f"The training data resumes at step {backed_up * 4} (after" in log
        assert "replica finished" in log
    record = _record(run_dirs[1])
    assert record["final_step"] == TOTAL_STEPS
    assert record["exported_weights"] == "polyak_average"
    assert record["experiment"]["strategy"] == "multi_worker"
    # Evaluations during training ran across both workers and are whole-split accuracies.
    assert all(0.0 <= v <= 1.0 for v in record["eval_history"]["val_top1"])
    assert all(0.0 <= v <= 1.0 for v in record["train_history"]["top1"])
    # Only the chief wrote: one experiment.json, no worker's temporary copies left.
    assert not os.path.exists(os.path.join(run_dirs[0], features.RUN_RECORD_FILE))
    assert not glob.glob(os.path.join(run_dirs[1], "**", "workertemp*"), recursive=True)
    assert not glob.glob(os.path.join(out, "Trainer", "resume", "**", "workertemp*"),
                         recursive=True)
    assert not glob.glob(backup)  # the finished job removed its backup

    print(f"second attempt done after {time.time() - started:.0f} s", flush=True)
    # The reference: one process, the same two replicas, uninterrupted.
    single_out = str(tmp_path / "one")
    single_job = _job(single_out, examples, transform_dir, EXP.replace(strategy="mirrored"))
    single_run = os.path.join(single_out, "Trainer", "model_run", "1")
    single = subprocess.run([sys.executable, JOB_SCRIPT, single_job, single_run, "2"],
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    print(f"reference done after {time.time() - started:.0f} s", flush=True)
    single_record = _record(single_run)
    assert single_record["final_step"] == TOTAL_STEPS

    two, one = _weights(out), _weights(single_out)
    assert two.keys() == one.keys()
    difference = np.sqrt(sum(np.sum((two[k] - one[k]) ** 2) for k in one))
    norm = np.sqrt(sum(np.sum(one[k] ** 2) for k in one))
    print(f"relative weight difference {difference / norm:.2e}")
    assert difference / norm < RELATIVE_TOLERANCE
    # The logged losses are the global batch's (not one worker's share, not a sum over the
    # workers), round by round, the rounds before the kill included.
    for name in ("supervised_loss", "top1"):
        whole = record["train_history"][name]
        assert len(whole) == len(single_record["train_history"][name]) > backed_up
        np.testing.assert_allclose(whole, single_record["train_history"][name], rtol=1e-3)
    assert record["final_eval"] == pytest.approx(single_record["final_eval"], abs=1e-6)


# Trains 3 steps of one fixed batch with 1 replica, then with 2 (logical CPU devices), and
# prints the logged supervised loss and top-1 of each.
_LOGGED_VALUES = """
import json, sys
import numpy as np, tensorflow as tf, tf_keras as keras
sys.path.insert(0, sys.argv[1])
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from modules.trainer import experiment, training
exp = experiment.for_dataset("synthetic").replace(num_labelled_examples=64, weight_decay=0.0)
rng = np.random.default_rng(0)
labels = rng.integers(0, exp.num_classes, (1, exp.batch_size)).astype(np.int32)
images = (labels[..., None, None, None] / exp.num_classes * 2 - 1
          + rng.normal(0, 0.1, (1, exp.batch_size, 32, 32, 3))).astype(np.float32)
batches = tf.data.Dataset.from_tensor_slices(
    {"labelled": {"image": images, "label": labels}}).repeat()
logged = {}
for replicas, strategy in ((1, tf.distribute.get_strategy()),
                           (2, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = training.build_model(exp)
    history = model.fit(batches, epochs=1, steps_per_epoch=3, verbose=0).history
    logged[replicas] = {k: history[k][0] for k in ("supervised_loss", "total_loss", "top1")}
print(json.dumps(logged))
"""


def test_logged_values_are_the_global_batch_s_whatever_the_replicas():
    # Each replica's loss term is its share of the global mean (compute_average_loss) and
    # Keras would add up the replicas' metric values: logged naively, 2 replicas show half
    # the loss, or twice the top-1. Batch statistics per replica move the values a little.
    result = subprocess.run([sys.executable, "-c", _LOGGED_VALUES, REPO], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0, result.stderr[-3000:]
    logged = json.loads(result.stdout.strip().splitlines()[-1])
    one, two = logged["1"], logged["2"]
    for name in one:
        assert two[name] == pytest.approx(one[name], rel=0.1), (name, one, two)
