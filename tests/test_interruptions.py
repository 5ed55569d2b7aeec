"""A Trainer killed with SIGKILL mid-training resumes from its last backup, repeating no epoch
that the backup holds."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, write_image_folder
from modules.trainer import training

pytestmark = pytest.mark.xdist_group("interruptions")


def _argv(images, out):
    return [sys.executable, os.path.join(REPO, "beam_runner.py"), "--source", "image_folder",
            "--data_path", images, "--dataset", "synthetic", "--labelled_fraction", "0.5",
            "--batch_size", "4", "--train_epochs", "40", "--output_dir", out,
            "--min_top1", "0.0", "--set", "eval_every_epochs=8"]


def test_sigkill_then_rerun_resumes_and_ends_at_the_right_step(tmp_path):
    images = write_image_folder(str(tmp_path / "images"), classes=3, train_per_class=16,
                                test_per_class=4)
    out = str(tmp_path / "out")
    first = subprocess.Popen(_argv(images, out), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    pattern = os.path.join(out, "tfx", "Trainer.supervised", "resume", "*", "chief", "checkpoint")
    deadline = time.time() + 400
    while not glob.glob(pattern) and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert glob.glob(pattern), "training never wrote a backup before the deadline"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    # The job's backup directory (resume/<key>/), which holds the chief's checkpoint.
    backup_dir = os.path.dirname(os.path.dirname(glob.glob(pattern)[0]))
    backed_up = training.rounds_in_backup(backup_dir)
    seconds_before = training.seconds_in_backup(backup_dir)
    assert seconds_before > 0
    # 40 labelled epochs of 6 steps run as 10 rounds of 4 epochs (training.fit_epoch_length).
    assert 1 <= backed_up < 10

    second = subprocess.run(_argv(images, out), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    epochs = [int(e) for e in re.findall(r"^Epoch (\d+)/10$", second.stdout, re.MULTILINE)]
    assert epochs and epochs[0] == backed_up + 1, (backed_up, epochs[:3])
    # ... and with the data an uninterrupted run would see next (rounds of 24 steps).
    assert f"The training data resumes at step {backed_up * 24} (after" in second.stderr
    assert epochs[-1] == 10
    # The finished run removed the backup it no longer needs.
    assert not glob.glob(pattern)
    run_dirs = glob.glob(os.path.join(out, "tfx", "Trainer.supervised", "model_run", "*"))
    finished = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "experiment.json")
        if os.path.exists(path):
            with open(path) as f:
                finished.append(json.load(f))
    # 24 labelled images / batch 4 = 6 steps per epoch, 40 epochs.
    assert [f["final_step"] for f in finished] == [240]
    # Its record holds every round, the killed process's included, and its training times
    # count on from them.
    elapsed = finished[0]["train_history"]["elapsed_s"]
    assert len(elapsed) == 10 and elapsed == sorted(elapsed)
    assert elapsed[backed_up - 1] == pytest.approx(seconds_before)
    assert seconds_before < elapsed[backed_up] and elapsed[-1] <= finished[0]["train_seconds"]
    # An evaluation every 8 labelled epochs, every second round: 5 in all.
    assert finished[0]["eval_every_rounds"] == 2
    assert len(finished[0]["eval_history"]["val_top1"]) == 5
