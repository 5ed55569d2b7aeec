"""The train step, the distribution strategy choice and a short fit."""

import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from modules.trainer import experiment, methods, training

SYNTHETIC = experiment.for_dataset("synthetic").replace(num_labelled_examples=64)


def _batches(exp, n=4):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, exp.num_classes, (n, exp.batch_size))
    # Class-dependent brightness makes the task learnable.
    images = (labels[..., None, None, None] / exp.num_classes * 2 - 1
              + rng.normal(0, 0.1, (n, exp.batch_size, 32, 32, 3)))
    return tf.data.Dataset.from_tensor_slices(
        {"labelled": {"image": images.astype(np.float32), "label": labels.astype(np.int32)}})


def test_train_step_logs_losses_and_lowers_the_loss():
    exp = SYNTHETIC.replace(weight_decay=0.0)
    model = training.build_model(exp)
    batch = next(iter(_batches(exp, 1)))
    first = model.train_step(batch)
    for _ in range(15):
        last = model.train_step(batch)
    assert set(first) >= {"supervised_loss", "total_loss", "top1", "top5", "lr"}
    assert float(model.optimizer.iterations) == 16
    # Mean trackers: the running mean falls only if the per-step loss does.
    assert float(last["supervised_loss"]) < float(first["supervised_loss"])


def test_penalty_is_not_in_the_logged_loss():
    exp = SYNTHETIC.replace(weight_decay=1.0, lr=1e-9)
    model = training.build_model(exp)
    batch = next(iter(_batches(exp, 1)))
    logits = model(batch["labelled"]["image"], training=True)["classes"]
    expected = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        batch["labelled"]["label"], logits))
    logs = model.train_step(batch)
    # Same BN batch statistics, so the logged CE equals the plain CE, without the L2 penalty.
    np.testing.assert_allclose(float(logs["supervised_loss"]), float(expected), rtol=1e-4)
    assert float(tf.add_n(model.losses)) > 1.0


def test_fit_runs_the_scheduled_steps(tmp_path):
    exp = SYNTHETIC.replace(schedule_epochs=(0, 2), checkpoint_every_epochs=1)
    strategy = tf.distribute.get_strategy()
    model = training.fit(exp, _batches(exp).repeat(), None, str(tmp_path / "logs"),
                         str(tmp_path / "backup"), strategy)
    assert int(model.optimizer.iterations) == 2 * 4  # 2 epochs x (64 // 16) steps
    assert (tmp_path / "logs" / "train").is_dir()
    assert (tmp_path / "logs" / "checkpoints" / "weights-0002.index").is_file()


def test_short_labelled_epochs_are_merged_into_rounds_and_stop_on_the_last_step(tmp_path):
    """1 step per labelled epoch (16 images, batch 16), 115 epochs: rounds of 11 epochs
    (at least 10 rounds), the last one cut at step 115, not 121; evaluations every round."""
    exp = SYNTHETIC.replace(num_labelled_examples=16, schedule_epochs=(0, 115),
                            eval_every_epochs=11)
    assert training.fit_epoch_length(exp) == 11
    model = training.fit(exp, _batches(exp).repeat(), _batches(exp).map(
        lambda b: (b["labelled"]["image"], b["labelled"]["label"])),
        str(tmp_path / "logs"), str(tmp_path / "backup"), tf.distribute.get_strategy())
    assert int(model.optimizer.iterations) == 115
    assert len(model.history.history["total_loss"]) == 11
    assert len(model.history.history["val_top1"]) == 11
    # Long labelled epochs stay one round each (ImageNet: 500 steps per epoch).
    assert training.fit_epoch_length(SYNTHETIC.replace(num_labelled_examples=16 * 500)) == 1


def test_backup_outlives_fit_so_a_kill_after_training_does_not_retrain(tmp_path):
    """A run killed during the final evaluation or export resumes after its last epoch."""
    exp = SYNTHETIC.replace(schedule_epochs=(0, 2), checkpoint_every_epochs=1)
    strategy = tf.distribute.get_strategy()
    backup = str(tmp_path / "backup")
    first = training.fit(exp, _batches(exp).repeat(), None, str(tmp_path / "a"), backup,
                         strategy)
    assert tf.io.gfile.glob(os.path.join(backup, "*", "checkpoint"))
    again = training.fit(exp, _batches(exp).repeat(), None, str(tmp_path / "b"), backup,
                         strategy)
    assert int(again.optimizer.iterations) == 2 * 4  # restored, not trained again
    assert not again.history.history  # no epoch ran
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_and_mirrored_strategies():
    default = training.make_strategy(SYNTHETIC)
    assert default is tf.distribute.get_strategy() and default.num_replicas_in_sync == 1
    mirrored = training.make_strategy(SYNTHETIC.replace(strategy="mirrored"))
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == 1  # this machine's one CPU device


def test_batch_must_divide_across_replicas(monkeypatch):
    monkeypatch.setattr(tf.distribute, "MirroredStrategy",
                        lambda: types.SimpleNamespace(num_replicas_in_sync=3))
    with pytest.raises(ValueError, match="batch_size=16 does not divide across 3 replicas"):
        training.make_strategy(SYNTHETIC.replace(strategy="mirrored"))


def test_multi_worker_needs_a_cluster_and_a_fresh_process(monkeypatch):
    exp = SYNTHETIC.replace(strategy="multi_worker")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the cluster in the TF_CONFIG"):
        training.make_strategy(exp)
    tf.zeros([1]).numpy()  # This process has now run TensorFlow: too late for collectives.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ValueError, match="must start before anything else runs TensorFlow"):
        training.make_strategy(exp)


def test_tpu_strategy_connects_to_the_named_tpu(monkeypatch):
    calls = []

    class FakeResolver:
        def __init__(self, tpu):
            calls.append(("resolver", tpu))

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", FakeResolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                        lambda r: calls.append(("connect", type(r).__name__)))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                        lambda r: calls.append(("initialize", type(r).__name__)))
    monkeypatch.setattr(tf.distribute, "TPUStrategy",
                        lambda r: types.SimpleNamespace(num_replicas_in_sync=8))
    exp = SYNTHETIC.replace(strategy="tpu", tpu_address="grpc://10.0.0.2:8470", batch_size=64)
    assert training.make_strategy(exp).num_replicas_in_sync == 8
    assert calls == [("resolver", "grpc://10.0.0.2:8470"), ("connect", "FakeResolver"),
                     ("initialize", "FakeResolver")]


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_backup(tmp_path, monkeypatch):
    # NaN images cannot make the loss NaN (oneDNN's ReLU maps NaN to 0), so a loss term
    # reports NaN for batches marked with label -1.
    def nan_on_marked(outputs, batch, exp):
        labels = batch["labelled"]["label"]
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(labels, 0),
                                                              outputs["classes_sup"])
        return tf.where(labels < 0, np.nan, loss)

    monkeypatch.setitem(methods.TERMS, "supervised", nan_on_marked)
    exp = SYNTHETIC.replace(schedule_epochs=(0, 3))
    good = _batches(exp)
    bad = good.map(lambda b: {"labelled": {"image": b["labelled"]["image"],
                                           "label": -tf.ones_like(b["labelled"]["label"])}})
    data = good.concatenate(bad).repeat()  # Epoch 1 is finite, epoch 2 is NaN.
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 5.*kept in"):
        training.fit(exp, data, None, str(tmp_path / "logs"), str(tmp_path / "backup"),
                     tf.distribute.get_strategy())
    assert any((tmp_path / "backup").rglob("*.index")), "the epoch-1 backup was deleted"


def test_auto_precision_follows_the_cpu(tmp_path, monkeypatch):
    amx = tmp_path / "amx"
    amx.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f amx_tile amx_bf16\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert training.cpu_has_fast_bfloat16(str(amx))
    assert not training.cpu_has_fast_bfloat16(str(avx2))
    assert not training.cpu_has_fast_bfloat16(str(tmp_path / "missing"))
    auto = SYNTHETIC.replace(precision="auto")
    for fast, chosen in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(training, "cpu_has_fast_bfloat16", lambda fast=fast: fast)
        assert training.resolve_precision(auto).precision == chosen
        assert training.build_model(auto).exp.precision == chosen
    assert training.resolve_precision(auto.replace(strategy="tpu", tpu_address="t")).precision \
        == "mixed_bfloat16"
    assert training.resolve_precision(SYNTHETIC).precision == "float32"  # explicit: kept
