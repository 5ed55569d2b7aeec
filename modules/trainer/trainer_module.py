"""Trainer module: `run_fn`, the entry point TFX's Trainer calls (docs/original_s4l.md §§3-5).

`fn_args.train_files` holds one glob per training split, in order: `labelled`,
`unlabelled` (TrainArgs(splits=[...]), docs/environment.md §3).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx import v1 as tfx

from modules import features
from modules.trainer import data, export, hyper_rule, methods, training
from modules.trainer.experiment import Experiment


def resume_dir(fn_args: tfx.components.FnArgs, exp: Experiment) -> str:
    """A backup directory that is the same for every attempt at the same training job.

    Each Trainer execution gets a new model_run_dir, so a run killed mid-training and started
    again resumes from here (keyed by the experiment and its inputs) instead of from step 0.
    """
    key = hashlib.sha256(json.dumps(
        [exp.to_json(), list(fn_args.train_files), fn_args.transform_output,
         fn_args.base_model or ""]).encode())
    component_dir = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip("/")))
    return os.path.join(component_dir, "resume", key.hexdigest()[:16])


def choose_backup(backup_dir: str, resume_from: str = "") -> str:
    """Says which backup the run resumes from, or why none; with `resume_from` (a backup of
    other settings) copies it into `backup_dir` first. Returns what it logged.

    Raises:
      ValueError: `resume_from` is not a backup directory.
    """
    if tf.io.gfile.exists(backup_dir):
        message = f"Resuming from the backup {backup_dir} (same settings and inputs)."
    elif resume_from:
        if not tf.io.gfile.isdir(resume_from) or not tf.io.gfile.listdir(resume_from):
            raise ValueError(f"resume_from={resume_from!r} is not a backup directory (a "
                             "Trainer's resume/<key>/)")
        _copy_tree(resume_from, backup_dir)
        message = (f"Resuming from the backup {resume_from} (resume_from; copied to "
                   f"{backup_dir}) with this run's settings.")
    else:
        root = os.path.dirname(backup_dir)
        others = ([name.rstrip("/") for name in sorted(tf.io.gfile.listdir(root))]
                  if tf.io.gfile.isdir(root) else [])
        message = "No backup of these settings and inputs: training starts at step 0."
        if others:
            message += (f" Backups of other settings or inputs (a changed setting, new data, "
                        f"or --no_cache) are kept in {root}: {', '.join(others)}; "
                        f"--set resume_from={os.path.join(root, others[-1])} resumes one "
                        "with the new settings.")
    logging.info("%s", message)
    return message


def _copy_tree(source: str, destination: str) -> None:
    for directory, _, files in tf.io.gfile.walk(source):
        target = os.path.join(destination, os.path.relpath(directory, source))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), os.path.join(target, name),
                             overwrite=True)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains, evaluates and exports one experiment.

    Under strategy multi_worker every replica of the job runs this with the same `fn_args`:
    all of them train; the chief alone evaluates, exports and writes experiment.json, and
    the others return once it has (TFX's executor then finds the exported model).
    """
    exp = Experiment.from_dict(fn_args.custom_config["experiment"]).validate()
    # First: multi_worker's strategy must start before anything runs a TensorFlow op.
    strategy = training.make_strategy(exp)
    chief = training.is_chief(strategy)
    if exp.num_labelled_examples == 0:
        # An epoch is a pass over the labelled images: all training images with pseudo-labels.
        index = 1 if exp.pseudo_labels_from else 0
        count = data.count_examples(fn_args.train_files[index], features.SPLITS[index])
        exp = exp.replace(num_labelled_examples=count)
    exp = training.resolve_precision(hyper_rule.fit_schedule(exp))
    keras.utils.set_random_seed(exp.seed)
    if methods.needs_exact_float32(exp):
        # VAT's xi-scaled finite differences are at float32's resolution; TF32 matmuls on
        # Ampere+ GPUs would swamp them (docs/original_s4l.md §10.1 item 7). No effect on CPU/TPU.
        tf.config.experimental.enable_tensor_float_32_execution(False)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    eval_ds = data.eval_dataset(fn_args.eval_files[0], tf_transform_output, exp.eval_batch_size)
    init_weights = None
    if exp.init_from:
        if not fn_args.base_model:
            raise ValueError(f"experiment {exp.name!r} starts from {exp.init_from!r}'s weights "
                             "but the Trainer got no base_model")
        init_weights = export.weights_prefix(fn_args.base_model)
    start = time.time()
    backup_dir = resume_dir(fn_args, exp)
    if chief:
        choose_backup(backup_dir, exp.resume_from)
    training.barrier(strategy)  # Every worker resumes from what the chief chose.
    # A resumed run goes on with the data an uninterrupted one would see next.
    start_step = training.rounds_in_backup(backup_dir) * training.round_steps(exp)
    # A resumed run's train_seconds also counts the training its backup holds.
    seconds_before = training.seconds_in_backup(backup_dir)
    if start_step:
        logging.info("The training data resumes at step %d (after %.0f s of training).",
                     start_step, seconds_before)
    make_stream = (data.pseudo_label_dataset if exp.pseudo_labels_from
                   else data.train_dataset)
    train_ds = training.distribute_training_data(
        strategy, lambda context: make_stream(fn_args.train_files, exp, start_step, context))
    model = training.fit(exp, train_ds, eval_ds, fn_args.model_run_dir, backup_dir, strategy,
                         init_weights)
    train_seconds = seconds_before + time.time() - start
    final_step = int(model.optimizer.iterations.numpy())
    # Polyak-averaged experiments evaluate and export the averages (the original exported the
    # raw weights, docs/original_s4l.md §10.1 item 4).
    exported = "polyak_average" if model.polyak is not None else "final"
    model = training.local_copy(model)
    if not chief:
        training.barrier(strategy)  # Returns once the chief has written everything.
        return
    # Per round, the rounds before a resume included: the training losses and metrics, and
    # the evaluations during training (eval_every_epochs) for "median of the last few" reports.
    logged = training.history_of(training.logged_rounds(backup_dir))
    history = {k: values for k, values in logged.items() if k.startswith("val_")}
    train_history = {k: values for k, values in logged.items() if not k.startswith("val_")}
    model.set_rotation_average(True)
    final = model.evaluate(eval_ds, verbose=0, return_dict=True)
    logging.info("Final eval of %s (%s weights): top-1 %.4f, top-5 %.4f", exp.name, exported,
                 final["top1"], final["top5"])
    export.save_serving_model(model, fn_args.serving_model_dir, tf_transform_output)
    export.save_hub_modules(model, export.hub_dir(fn_args.serving_model_dir))
    export.save_weights(model, fn_args.serving_model_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, features.RUN_RECORD_FILE), "w") as f:
        f.write(json.dumps({"experiment": exp.to_dict(), "final_eval": final,
                            "final_step": final_step, "exported_weights": exported,
                            "eval_history": history, "train_history": train_history,
                            "eval_every_rounds": (training.validation_every_rounds(exp)
                                                  if exp.eval_every_epochs > 0 else 0),
                            "train_seconds": round(train_seconds, 1)}, indent=1))
    # Everything is written: the backup that let a killed run resume is no longer needed.
    if tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)
    training.barrier(strategy)
