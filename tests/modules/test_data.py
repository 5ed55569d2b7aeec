"""The Trainer's input pipeline: seeded, reproducible streams from the split files."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from modules.trainer import data, experiment, training
from pipeline.components.example_gen import build, sources


def _splits(folder, out):
    build.build_splits(sources.ImageFolderSource(folder), str(out),
                       build.SplitOptions(labelled_fraction=0.5, num_shards=2))
    return [str(out / "Split-labelled" / "*"), str(out / "Split-unlabelled" / "*")]


def _first_losses(patterns, exp, steps=3):
    keras.utils.set_random_seed(exp.seed)
    model = training.build_model(exp)
    iterator = iter(data.train_dataset(patterns, exp))
    return [float(model.train_step(next(iterator))["supervised_loss"]) for _ in range(steps)]


def test_streams_are_batched_augmented_and_zipped(image_folder, tmp_path):
    exp = experiment.for_dataset("synthetic").replace(num_classes=4, batch_size=4,
                                                      unsup_batch_mult=2.0)
    batch = next(iter(data.train_dataset(_splits(image_folder, tmp_path / "s"), exp)))
    assert batch["labelled"]["image"].shape == (4, 32, 32, 3)
    assert batch["unlabelled"]["image"].shape == (8, 32, 32, 3)
    assert batch["labelled"]["label"].dtype.name == "int32"


def test_same_seed_gives_identical_first_losses(image_folder, tmp_path):
    exp = experiment.for_dataset("synthetic").replace(num_classes=4, batch_size=4,
                                                      num_labelled_examples=20, seed=3)
    patterns = _splits(image_folder, tmp_path / "s")
    first, second = _first_losses(patterns, exp), _first_losses(patterns, exp)
    assert first == second  # Bit-identical on CPU.
    other = _first_losses(patterns, exp.replace(seed=4))
    assert not np.allclose(first, other)


def test_a_stream_started_at_batch_k_continues_the_uninterrupted_stream(image_folder,
                                                                         tmp_path):
    # 20 labelled images in batches of 6: batches 2-5 cross pass boundaries (pass 1 starts
    # inside batch 3), so a resume must find both the pass and the place in it.
    exp = experiment.for_dataset("synthetic").replace(num_classes=4, batch_size=6,
                                                      unsup_batch_mult=1.0, seed=5)
    patterns = _splits(image_folder, tmp_path / "s")
    tf.random.set_seed(0)  # as run_fn does for seed 0 (tf.data treats a 0 seed specially)
    whole = list(data.train_dataset(patterns, exp).take(7))
    resumed = list(data.train_dataset(patterns, exp, start_step=3).take(4))
    for expected, got in zip(whole[3:], resumed, strict=True):
        for stream in ("labelled", "unlabelled"):
            np.testing.assert_array_equal(expected[stream]["label"], got[stream]["label"])
            np.testing.assert_array_equal(expected[stream]["image"], got[stream]["image"])
    # Each pass holds every image once, in an order of its own.
    labels = np.concatenate([b["labelled"]["label"] for b in whole]).tolist()
    assert sorted(labels[:20]) == sorted(labels[20:40])
    assert labels[:20] != labels[20:40]


def test_workers_share_every_global_batch_exactly(image_folder, tmp_path):
    # Multi-worker training: 2 workers with 2 replicas each; each replica's batch is a
    # quarter of the global batch, and worker w's replicas hold its w-th half, in order,
    # also from a resumed step and on the FixMatch strong views.
    exp = experiment.for_dataset("synthetic").replace(
        num_classes=4, batch_size=8, unsup_batch_mult=1.0, losses={"fixmatch": 1.0}, seed=2)
    patterns = _splits(image_folder, tmp_path / "s")
    tf.random.set_seed(0)
    whole = list(data.train_dataset(patterns, exp, start_step=2).take(3))
    shares = [list(data.train_dataset(
        patterns, exp, start_step=2, input_context=tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=4)
    ).take(6)) for worker in (0, 1)]
    for step, expected in enumerate(whole):
        for stream in ("labelled", "unlabelled"):
            for key in expected[stream]:
                replicas = [share[2 * step + r][stream][key] for share in shares
                            for r in (0, 1)]
                assert all(len(batch) == 2 for batch in replicas)
                np.testing.assert_array_equal(np.concatenate(replicas), expected[stream][key])


def test_rounds_in_backup_reads_what_keras_backed_up(tmp_path):
    assert training.rounds_in_backup(str(tmp_path / "none")) == 0
    assert training.seconds_in_backup(str(tmp_path / "none")) == 0.0
    exp = experiment.for_dataset("synthetic").replace(num_labelled_examples=8, batch_size=4)
    rng = np.random.default_rng(0)
    batch = {"labelled": {"image": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
                          "label": np.zeros(4, np.int32)}}
    dataset = tf.data.Dataset.from_tensors(batch).repeat()

    def fit(epochs: int) -> keras.callbacks.History:
        return training.build_model(exp).fit(
            dataset, epochs=epochs, steps_per_epoch=2, verbose=0,
            callbacks=[training.ElapsedTime(), training.RoundLog(str(tmp_path / "b")),
                       keras.callbacks.BackupAndRestore(str(tmp_path / "b"),
                                                        delete_checkpoint=False)])

    first = fit(3).history["elapsed_s"]
    assert training.rounds_in_backup(str(tmp_path / "b")) == 3
    assert training.seconds_in_backup(str(tmp_path / "b")) == pytest.approx(first[-1])
    # A new process (a new model) resumes the backup and counts on from its seconds.
    resumed = fit(5).history["elapsed_s"]
    assert len(resumed) == 2 and first[-1] < resumed[0] < resumed[1]
    assert training.seconds_in_backup(str(tmp_path / "b")) == pytest.approx(resumed[-1])
    # The round log holds both processes' rounds, as one uninterrupted run would log them.
    whole = training.history_of(training.logged_rounds(str(tmp_path / "b")))
    assert whole["elapsed_s"] == pytest.approx(first + resumed)
    assert len(whole) > 1 and {len(values) for values in whole.values()} == {5}


def test_the_round_log_drops_rounds_the_backup_does_not_hold(tmp_path, caplog):
    """A kill between the round log's write and the backup's leaves one round more logged
    than backed up: it runs again, so it must not be counted twice."""
    exp = experiment.for_dataset("synthetic").replace(num_labelled_examples=8, batch_size=4)
    batch = {"labelled": {"image": np.zeros((4, 32, 32, 3), np.float32),
                          "label": np.zeros(4, np.int32)}}
    backup = str(tmp_path / "b")
    training.build_model(exp).fit(
        tf.data.Dataset.from_tensors(batch).repeat(), epochs=2, steps_per_epoch=1, verbose=0,
        callbacks=[training.RoundLog(backup),
                   keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)])
    log = tmp_path / "b" / training.ROUND_LOG_FILE
    rounds = json.loads(log.read_text())
    log.write_text(json.dumps([*rounds, {"round": 2, "logs": {"loss": 1.0}}]))
    assert [r["round"] for r in training.logged_rounds(backup)] == [0, 1]
    # A backup without its round log (written before the log existed) is named on resume.
    log.unlink()
    training.RoundLog(backup).on_train_begin()
    assert "holds 2 rounds but its round log 0" in caplog.text
    assert training.logged_rounds(str(tmp_path / "none")) == []
    assert training.history_of([{"round": 1, "logs": {"loss": 2.0, "val_top1": 0.5}},
                                {"round": 0, "logs": {"loss": 3.0}}]) == {
        "loss": [3.0, 2.0], "val_top1": [0.5]}
