"""The S4L Keras model with its custom train step, the distribution strategy, and `fit`.

The train step sums `weight * compute_average_loss(term)` over `exp.losses` and adds the L2
penalty (kept out of the logged losses, as the original, docs/original_s4l.md §3.3). Keras SGD
folds the LR into the velocity (v <- 0.9 v - lr g) where TF1's MomentumOptimizer scales the
accumulator at apply time: identical while the LR is constant, a tiny difference right after
each x0.1 decay (spec section 5.1); we accept it rather than maintain a custom optimizer.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from modules.trainer import loss_rotation, methods, model_resnet_v2, polyak, schedules
from modules.trainer.experiment import Experiment
from modules.trainer.step_context import StepContext


class S4LModel(keras.Model):
    """Backbone + linear heads; `call` returns {"pre_logits", "classes", ...} for images."""

    def __init__(self, exp: Experiment, **kwargs):
        super().__init__(**kwargs)
        self.exp = exp
        self.backbone = model_resnet_v2.build_backbone(
            exp.architecture, exp.filters_factor, exp.weight_decay, exp.bn_momentum,
            exp.bn_epsilon, depth=exp.resnet_depth, kernel_init=exp.kernel_init)
        self.classes_head = model_resnet_v2.build_head(exp.num_classes, "classes",
                                                       exp.weight_decay)
        self.extra_heads = {
            head: model_resnet_v2.build_head(units, head, exp.weight_decay)
            for head, units in methods.heads(exp).items()}
        self.lr_schedule = schedules.learning_rate(exp)
        self.loss_trackers = {name: keras.metrics.Mean(f"{name}_loss") for name in exp.losses}
        self.diagnostic_trackers = {name: keras.metrics.Mean(name)
                                    for name in methods.diagnostics(exp)}
        # Set by build_model once the weights exist (Polyak-averaged experiments only).
        self.polyak: polyak.PolyakAverage | None = None
        self.total_tracker = keras.metrics.Mean("total_loss")
        self.top1 = keras.metrics.SparseCategoricalAccuracy("top1")
        self.top5 = keras.metrics.SparseTopKCategoricalAccuracy(5, "top5")
        # Rotation models: also the accuracy of class logits averaged over the 4 rotations of
        # each eval image (the original's `rot_avg`, spec section 6); top1/top5 = upright.
        self.rot_avg_top1 = keras.metrics.SparseCategoricalAccuracy("rot_avg_top1")
        self.rot_avg_top5 = keras.metrics.SparseTopKCategoricalAccuracy(5, "rot_avg_top5")
        self.rot_avg = False
        self.eval_only_metrics: list[keras.metrics.Metric] = []
        self.set_rotation_average(True)

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        pre_logits = self._pre_logits(images, training)
        outputs = {"pre_logits": pre_logits, "classes": self.classes_head(pre_logits)}
        for name, head in self.extra_heads.items():
            outputs[name] = head(pre_logits)
        return outputs

    def classify(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Class logits only (the VAT perturbed passes)."""
        return self.classes_head(self._pre_logits(images, training))

    def _pre_logits(self, images: tf.Tensor, training: bool) -> tf.Tensor:
        # Heads are float32 layers, so logits stay float32 under mixed_bfloat16.
        return tf.cast(self.backbone(images, training=training)["pre_logits"], tf.float32)

    def set_rotation_average(self, on: bool) -> None:
        """Turns the rotation-averaged eval metrics on (where the experiment asks for them) or
        off. They cost 4 more forward passes per eval image, so the evaluations during
        training run upright only and the final one adds them; evaluate retraces."""
        on = on and self.exp.eval_rotation_average and "rotation" in self.exp.losses
        if on != self.rot_avg:
            self.rot_avg = on
            self.eval_only_metrics = [self.rot_avg_top1, self.rot_avg_top5] if on else []
            self.test_function = None  # Keras retraces `evaluate` with the new metrics.

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [*self.loss_trackers.values(), self.total_tracker, self.top1, self.top5,
                *self.diagnostic_trackers.values(), *self.eval_only_metrics]

    # No AutoGraph below the steps: their control flow is plain Python (methods, loss terms,
    # rotation averaging are fixed when tracing), and converting tf-keras' own layer code,
    # which AutoGraph does not skip as it skips TensorFlow's, made up most of every trace.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, batch: dict) -> dict[str, tf.Tensor]:
        batch = methods.prepare(batch, self.exp)
        seed = tf.stack([tf.constant(self.exp.seed, tf.int64),
                         tf.cast(self.optimizer.iterations, tf.int64)])
        with tf.GradientTape() as tape:
            step = StepContext(exp=self.exp, model=self, tape=tape, seed=seed,
                               track=lambda name, v: self.diagnostic_trackers[name].update_state(v))
            outputs = methods.forward(self, batch, training=True)
            total = tf.zeros([], tf.float32)
            # compute_average_loss divides by the global batch: each replica's value is its
            # share of the loss, so the trackers take it times the replicas (the replica's
            # mean; the trackers' results average it over the replicas).
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            for name, weight in self.exp.losses.items():
                loss = tf.nn.compute_average_loss(methods.TERMS[name](outputs, batch, step))
                self.loss_trackers[name].update_state(loss * replicas)
                total += weight * loss
            penalty = tf.nn.scale_regularization_loss(tf.add_n(self.losses)) if self.losses else 0.0
            objective = total + penalty
        gradients = tape.gradient(objective, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=False))
        if self.polyak is not None:
            self.polyak.update()
        self.total_tracker.update_state(total * replicas)
        # Rows the supervised term weights 0 (turned copies with rotation_classify_turns
        # off) are not classified, so the training accuracy leaves them out too.
        labelled = batch["labelled"]
        counted = (tf.cast(labelled["label_weight"] > 0, tf.float32)
                   if "label_weight" in labelled else None)
        self.top1.update_state(labelled["label"], outputs["classes_sup"], sample_weight=counted)
        self.top5.update_state(labelled["label"], outputs["classes_sup"], sample_weight=counted)
        logs = {m.name: m.result() for m in self.metrics if m not in self.eval_only_metrics}
        logs["lr"] = self.lr_schedule(self.optimizer.iterations)
        return logs

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        images, labels = data
        logits = self(images, training=False)["classes"]
        self.top1.update_state(labels, logits)
        self.top5.update_state(labels, logits)
        results = {"top1": self.top1.result(), "top5": self.top5.result()}
        if self.rot_avg:
            # One pass over the image-major [R * N] rotations, logits averaged per image.
            rotated = self(loss_rotation.rotate_batch(images), training=False)["classes"]
            averaged = tf.reduce_mean(
                tf.reshape(rotated, [-1, loss_rotation.NUM_ROTATIONS, tf.shape(rotated)[-1]]),
                axis=1)
            self.rot_avg_top1.update_state(labels, averaged)
            self.rot_avg_top5.update_state(labels, averaged)
            results.update(rot_avg_top1=self.rot_avg_top1.result(),
                           rot_avg_top5=self.rot_avg_top5.result())
        return results


def check_replicas(exp: Experiment, replicas: int) -> None:
    """Raises ValueError when a batch size does not divide across `replicas`."""
    for field in ("batch_size", "unsup_batch_size"):
        value = getattr(exp, field)
        if value % replicas:
            raise ValueError(f"experiment {exp.name!r}: {field}={value} does not divide across "
                             f"{replicas} replicas of the {exp.strategy} strategy")


def expected_replicas(exp: Experiment) -> int | None:
    """Replicas the strategy will have, where that is known without connecting (not TPU or
    multi_worker)."""
    if exp.strategy == "mirrored":
        return max(1, len(tf.config.list_physical_devices("GPU")))
    return 1 if exp.strategy == "default" else None


def make_strategy(exp: Experiment) -> tf.distribute.Strategy:
    """The configured strategy; checks that the batch divides across its replicas.

    Raises:
      ValueError: multi_worker without a TF_CONFIG cluster, or in a process that has
        already run TensorFlow ops (collective ops are configured once, at start-up).
    """
    if exp.strategy == "multi_worker":
        strategy = _multi_worker_strategy()
    elif exp.strategy == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=exp.tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif exp.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    check_replicas(exp, strategy.num_replicas_in_sync)
    return strategy


def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (as Vertex sets it)."""
    if not tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec().as_dict():
        raise ValueError("strategy 'multi_worker' needs the cluster in the TF_CONFIG "
                         "environment variable (Vertex sets it on every replica of a "
                         "multi-replica job; docs/scale.md)")
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise ValueError(
            "strategy 'multi_worker' must start before anything else runs TensorFlow in the "
            "process (a Trainer job of its own, as on Vertex; not the local runner, which "
            f"runs every component in one process): {error}") from error


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs (always, except non-chief workers)."""
    return strategy.extended.should_checkpoint


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Under multi_worker, waits until every worker has reached its call (a collective sum
    of one number); a no-op otherwise."""
    if is_multi_worker(strategy):
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def distribute_training_data(strategy: tf.distribute.Strategy,
                             make: Callable[[tf.distribute.InputContext | None],
                                            tf.data.Dataset]):
    """The training input for `fit`: `make(None)` (global batches) except under
    multi_worker, where each worker builds its own share of every global batch with
    `make(input_context)` (data.training_stream), so that the workers together train on
    exactly the batches one machine would."""
    if is_multi_worker(strategy):
        return strategy.distribute_datasets_from_function(make)
    return make(None)


def local_copy(model: S4LModel) -> S4LModel:
    """A copy of `model` outside its distribution strategy, for the final evaluation and
    the export: with Polyak averaging, the averaged trainable weights (and the live BN
    statistics, as the original's eval). Under multi_worker every worker must call this
    (reading the BN statistics syncs them across the workers); the chief then evaluates
    and exports alone."""
    if model.polyak is None and not is_multi_worker(model.distribute_strategy):
        return model
    if model.polyak is not None:
        model.polyak.copy_to_model()
    copy = build_model(model.exp.replace(polyak_averaging=False))
    copy.set_weights(model.get_weights())
    return copy


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training with a clear error at the first NaN or infinite loss.

    Raising (instead of TerminateOnNaN's quiet stop) skips BackupAndRestore's clean-up, so the
    last good backup stays for inspection or a restart with other settings.
    """

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("total_loss")
        if loss is not None and not np.isfinite(loss):
            step = int(self.model.optimizer.iterations.numpy())
            raise FloatingPointError(
                f"training of {self.model.exp.name!r} stopped: the loss became {loss} at step "
                f"{step}; the last good checkpoint (end of the previous epoch) is kept in "
                f"{self.backup_dir}. Lower the learning rate (and add --set resume_from="
                f"{self.backup_dir} to continue from that checkpoint) or check the input data.")


# CPU flags (Linux /proc/cpuinfo) of oneDNN's fast bfloat16 kernels. Without them (AVX2-only
# CPUs) TensorFlow falls back to Eigen's bfloat16 kernels, several times slower than float32.
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_fast_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


def resolve_precision(exp: Experiment) -> Experiment:
    """`exp` with precision "auto" replaced by what this machine runs fast: mixed_bfloat16
    on TPUs and on CPUs with AMX or AVX-512 BF16, float32 on GPUs and other CPUs."""
    if exp.precision != "auto":
        return exp
    if exp.strategy == "tpu":
        chosen = "mixed_bfloat16"
    elif tf.config.list_physical_devices("GPU"):
        chosen = "float32"
    else:
        chosen = "mixed_bfloat16" if cpu_has_fast_bfloat16() else "float32"
    logging.info("Precision auto -> %s", chosen)
    return exp.replace(precision=chosen)


def build_model(exp: Experiment) -> S4LModel:
    """An S4LModel with its SGD optimizer, built (variables created) for exp.image_size.

    Under `precision="mixed_bfloat16"` the backbone computes in bfloat16 with float32
    variables; the heads stay float32. The global Keras policy is restored afterwards (layers
    keep the policy they were built with).
    """
    exp = resolve_precision(exp)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(exp.precision)
    try:
        model = S4LModel(exp)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.compile(optimizer=keras.optimizers.SGD(
        learning_rate=schedules.learning_rate(exp), momentum=exp.momentum,
        nesterov=exp.nesterov))
    # The logged values are already global (Keras metrics sum their state over the
    # replicas; the loss trackers take each replica's mean): log the first replica's, where
    # Keras' default ("sum" outside TPUs) would multiply them by the replicas.
    model.distribute_reduction_method = "first"
    model(np.zeros([1, exp.image_size, exp.image_size, 3], np.float32))
    # Seconds of training so far, backed up with the model so that a resumed run's times
    # (`elapsed_s`, the record's train_seconds) count the processes before it. Tracked like
    # the Polyak averages below: in checkpoints, not among the Keras weights.
    trained_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="trained_seconds",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    object.__setattr__(model, "trained_seconds", trained_seconds)
    model._track_trackable(trained_seconds, name="trained_seconds")  # noqa: SLF001
    if exp.polyak_averaging:
        if exp.polyak_half_life_steps:
            decay = polyak.decay_for_steps(exp.polyak_half_life_steps)
        else:
            decay = polyak.decay_for(schedules.steps_per_epoch(exp), exp.polyak_half_life_epochs)
        average = polyak.PolyakAverage(model.trainable_variables, decay,
                                       warm_up=bool(exp.polyak_half_life_steps))
        # A checkpoint dependency (backups keep the averages) but not Keras weights, so
        # get_weights/set_weights and exported models hold each weight once.
        object.__setattr__(model, "polyak", average)  # skips Keras' weight tracking
        model._track_trackable(average, name="polyak")  # noqa: SLF001
    return model


def weights_checkpoint(model: S4LModel) -> tf.train.Checkpoint:
    """The model's layers (weights and BN statistics), without the optimizer: what a later
    stage warm-starts from. (A Keras `save_weights` checkpoint also holds the optimizer, whose
    step counter then put MOAM step 3's LR schedule past its end from the first step.)"""
    return tf.train.Checkpoint(backbone=model.backbone, classes_head=model.classes_head,
                               extra_heads=model.extra_heads)


# A Keras epoch ("round") of fewer steps than this is merged with the next labelled epochs:
# each round ends with a backup, a TensorBoard write and the metrics' reset, about a second
# of work, which doubled the length of a 600-image run (9 steps per labelled epoch).
MIN_STEPS_PER_ROUND = 200
# ... but a run keeps at least this many rounds, so it is backed up (and can resume) often.
MIN_ROUNDS = 10


def fit_epoch_length(exp: Experiment) -> int:
    """Labelled epochs per Keras epoch (one round of `fit`: backup, logs, evaluations)."""
    per_epoch = schedules.steps_per_epoch(exp)
    wanted = math.ceil(MIN_STEPS_PER_ROUND / per_epoch)
    return max(1, min(wanted, int(exp.schedule_epochs[-1] // MIN_ROUNDS)))


def round_steps(exp: Experiment) -> int:
    """Optimizer steps in one round (one Keras epoch) of `fit`."""
    return fit_epoch_length(exp) * schedules.steps_per_epoch(exp)


def _in_backup(backup_dir: str, name: str) -> np.ndarray | None:
    """The value of the variable `name` in the BackupAndRestore checkpoint in `backup_dir`
    (None without a backup or without that variable)."""
    checkpoint = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
    if checkpoint is None:
        return None
    reader = tf.train.load_checkpoint(checkpoint)
    keys = [k for k in reader.get_variable_to_shape_map() if name in k]
    return reader.get_tensor(keys[0]) if keys else None


def rounds_in_backup(backup_dir: str) -> int:
    """Rounds that the BackupAndRestore checkpoint in `backup_dir` holds (0 without one).

    Keras stores the 0-based index of the last finished round as `ckpt_saved_epoch`.
    """
    saved = _in_backup(backup_dir, "ckpt_saved_epoch")
    return 0 if saved is None else max(0, int(saved) + 1)


def seconds_in_backup(backup_dir: str) -> float:
    """Seconds of training that the backup in `backup_dir` holds (0 without one)."""
    seconds = _in_backup(backup_dir, "trained_seconds")
    return 0.0 if seconds is None else float(seconds)


def validation_every_rounds(exp: Experiment) -> int:
    """Rounds of `fit` between evaluations during training (exp.eval_every_epochs > 0)."""
    return max(1, round(exp.eval_every_epochs / fit_epoch_length(exp)))


class ElapsedTime(keras.callbacks.Callback):
    """Logs `elapsed_s`, the seconds of training so far, at the end of every round (after its
    evaluation): the x axis of time-to-accuracy plots. A resumed run counts on from the
    seconds its backup holds (`trained_seconds`), so the times are the whole run's. Runs
    before BackupAndRestore, whose end-of-round backup then holds the new total."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.time()
        self._before: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._before is None:  # BackupAndRestore restored the backup in on_train_begin
            self._before = float(self.model.trained_seconds.numpy())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        elapsed = self._before + time.time() - self._start
        self.model.trained_seconds.assign(elapsed)
        if logs is not None:
            logs["elapsed_s"] = elapsed


ROUND_LOG_FILE = "rounds.json"


def logged_rounds(backup_dir: str, held: int | None = None) -> list[dict]:
    """The per-round logs kept beside the backup in `backup_dir` (`RoundLog`), as far as the
    backup goes (`held` rounds, read from it when not given): a round logged after the last
    backup will run again."""
    path = os.path.join(backup_dir, ROUND_LOG_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        rounds = json.load(f)
    held = rounds_in_backup(backup_dir) if held is None else held
    return [r for r in rounds if r["round"] < held]


def history_of(rounds: list[dict]) -> dict[str, list[float]]:
    """Per-round logs as Keras' `History.history`: each key's values in round order (the
    evaluations' `val_` keys only in the rounds that evaluated)."""
    history: dict[str, list[float]] = {}
    for entry in sorted(rounds, key=lambda r: r["round"]):
        for key, value in entry["logs"].items():
            history.setdefault(key, []).append(value)
    return history


class RoundLog(keras.callbacks.Callback):
    """Keeps every round's logs (losses, metrics, evaluations, `elapsed_s`) in
    `backup_dir/rounds.json`, the rounds before a resume included, so that a resumed run's
    record holds the whole curve; Keras' History holds only this process's rounds. Runs
    after the callbacks that add logs and before BackupAndRestore: a kill between the two
    writes leaves a round logged that the backup lacks, which `logged_rounds` drops."""

    def __init__(self, backup_dir: str, write: bool = True):
        super().__init__()
        self.backup_dir = backup_dir
        self.write = write  # the chief's; other workers of multi_worker keep theirs in memory

    def on_train_begin(self, logs: dict | None = None) -> None:
        held = rounds_in_backup(self.backup_dir)
        self.rounds = logged_rounds(self.backup_dir, held)
        if len(self.rounds) < held:
            logging.warning(
                "The backup in %s holds %d rounds but its round log %d (a backup written "
                "before the log existed?): the record's per-round history will lack %d of "
                "the rounds before the resume.", self.backup_dir, held, len(self.rounds),
                held - len(self.rounds))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.rounds.append({"round": epoch,
                            "logs": {k: float(v) for k, v in (logs or {}).items()}})
        if self.write:
            tf.io.gfile.makedirs(self.backup_dir)
            path = os.path.join(self.backup_dir, ROUND_LOG_FILE)
            with tf.io.gfile.GFile(path + ".tmp", "w") as f:
                json.dump(self.rounds, f)
            tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


class StopAtStep(keras.callbacks.Callback):
    """Ends training at the schedule's last step, inside the last round if it is longer."""

    def __init__(self, total_steps: int):
        super().__init__()
        self.total_steps = total_steps

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if int(self.model.optimizer.iterations.numpy()) >= self.total_steps:
            self.model.stop_training = True


def fit(exp: Experiment, train_ds: tf.data.Dataset, eval_ds: tf.data.Dataset | None,
        log_dir: str, backup_dir: str, strategy: tf.distribute.Strategy,
        init_weights: str | None = None) -> S4LModel:
    """Trains for the schedule's total steps; resumes from `backup_dir` after a kill.

    TensorBoard logs and periodic weight checkpoints go to `log_dir` (the model_run_dir).
    `init_weights` (a Keras weights prefix) warm-starts the model; a resumed backup wins.
    """
    total_steps = schedules.total_steps(exp)
    steps_per_epoch = round_steps(exp)
    epochs = math.ceil(total_steps / steps_per_epoch)
    with strategy.scope():
        model = build_model(exp)
        if init_weights:
            # Weights of the same architecture; the optimizer is not in the checkpoint, so
            # this stage starts at step 0 and runs its own LR schedule from the warm-up.
            weights_checkpoint(model).read(init_weights).expect_partial()
            logging.info("Initialised %s from %s", exp.name, init_weights)
            if model.polyak is not None:
                model.polyak.reset()
    logging.info("Training %s: %d steps (%g labelled epochs) in %d rounds of %d steps, batch "
                 "%d (+%d unlabelled), base LR %g", exp.name, total_steps,
                 exp.schedule_epochs[-1], epochs, steps_per_epoch, exp.batch_size,
                 exp.unsup_batch_size, exp.base_lr)
    callbacks = [
        RoundLog(backup_dir, write=is_chief(strategy)),
        # Kept when fit returns: a kill during the final evaluation or the export then
        # resumes after the last epoch instead of from step 0. run_fn deletes it once the
        # model and experiment.json are written.
        keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(
            os.path.join(log_dir, "checkpoints", "weights-{epoch:04d}"), save_weights_only=True,
            save_freq=max(steps_per_epoch, schedules.steps_per_epoch(exp)
                          * exp.checkpoint_every_epochs)),
        keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"),
        StopOnNonFiniteLoss(backup_dir),
        StopAtStep(total_steps),
    ]
    # First, so that RoundLog and the History that fit adds last record what it logs.
    callbacks.insert(0, ElapsedTime())
    if model.polyak is not None:
        callbacks.insert(0, polyak.EvaluateWithAverages(model.polyak))
    validation = {}
    if eval_ds is not None and exp.eval_every_epochs > 0:
        validation = {"validation_data": eval_ds,
                      "validation_freq": validation_every_rounds(exp)}
        # Upright only: the rotation-averaged pass would make each evaluation 5x longer (a
        # third of a 1 % rotation run); the final evaluation reports it.
        model.set_rotation_average(False)
    model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
              verbose=2, **validation)
    return model
