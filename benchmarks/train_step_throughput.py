"""Training-step throughput of the Trainer's S4LModel (supervised method) on this CPU.

Measures images/second of `S4LModel.train_step` (fixed in-memory batch, so the input pipeline
is excluded) for the Fashion-MNIST backbone, with TensorFlow's oneDNN kernels on and off.
Each setting runs in a fresh process because TF_ENABLE_ONEDNN_OPTS is read at import.

  .venv/bin/python benchmarks/train_step_throughput.py [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import json, os, sys, time
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np, tensorflow as tf
sys.path.insert(0, os.getcwd())
from pipeline import presets
from modules.trainer import training
exp = presets.get("supervised", "fashion_mnist").replace(num_labelled_examples=6000)
model = training.build_model(exp)
rng = np.random.default_rng(0)
batch = {"labelled": {
    "image": tf.constant(rng.uniform(-1, 1, (exp.batch_size, 32, 32, 3)).astype(np.float32)),
    "label": tf.constant(rng.integers(0, 10, exp.batch_size).astype(np.int32))}}
step = tf.function(model.train_step)
for _ in range(3):
    step(batch)
steps = int(sys.argv[1])
start = time.perf_counter()
for _ in range(steps):
    logs = step(batch)
float(logs["total_loss"])
elapsed = time.perf_counter() - start
print(json.dumps({"images_per_s": round(steps * exp.batch_size / elapsed, 1),
                  "batch": exp.batch_size, "architecture": exp.architecture,
                  "filters_factor": exp.filters_factor}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for onednn in ("0", "1"):
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run([sys.executable, "-c", _CHILD, str(args.steps)], cwd=repo, env=env,
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        rows.append({"TF_ENABLE_ONEDNN_OPTS": onednn, **result})
    rows[1]["speed-up"] = round(rows[1]["images_per_s"] / rows[0]["images_per_s"], 2)
    sys.path.insert(0, repo)
    from benchmarks import common

    common.save("train_step_throughput", rows,
                ["TF_ENABLE_ONEDNN_OPTS", "architecture", "filters_factor", "batch",
                 "images_per_s", "speed-up"])


if __name__ == "__main__":
    main()
