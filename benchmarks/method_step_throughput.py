"""Training-step speed of every method's Fashion-MNIST preset, relative to the work it does.

For each preset, times `S4LModel.train_step` (compiled, fixed in-memory batch: the input
pipeline is excluded) and reports labelled images/s, network images/s (labelled images/s x
the forward-pass images per labelled image of `methods.images_per_labelled_image`), and
the network images/s relative to the supervised step: near 1.0 means the method costs what
its extra images cost and nothing more.

  .venv/bin/python benchmarks/method_step_throughput.py [--steps 10] [--presets a,b]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from modules.trainer import experiment, methods, training  # noqa: E402
from pipeline import presets  # noqa: E402

DEFAULT_PRESETS = ("supervised,s4l_rotation,s4l_rotation_upright,s4l_exemplar,"
                   "s4l_exemplar_upright,vat,vat_entmin,fixmatch,moam_step_1,moam_fixmatch_step_1")


def batch_for(exp: experiment.Experiment, rng: np.random.Generator) -> dict:
    """A random batch shaped as the input pipeline delivers it for `exp` (exemplar patches,
    FixMatch's strong view of the unlabelled images)."""
    patches = methods.train_patches(exp)
    views = (patches,) if patches > 1 else ()

    def images(n):
        return tf.constant(rng.uniform(-1, 1, (n, *views, 32, 32, 3)).astype(np.float32))

    batch = {"labelled": {"image": images(exp.batch_size), "label": tf.constant(
        rng.integers(0, exp.num_classes, exp.batch_size).astype(np.int32))}}
    if exp.unsup_batch_size:
        batch["unlabelled"] = {"image": images(exp.unsup_batch_size)}
        if methods.uses_strong_view(exp):
            batch["unlabelled"]["strong"] = images(exp.unsup_batch_size)
    return batch


def measure(name: str, steps: int, precision: str = "float32") -> dict:
    exp = presets.get(name, "fashion_mnist").replace(num_labelled_examples=6000,
                                                     precision=precision)
    model = training.build_model(exp)
    batch = batch_for(exp, np.random.default_rng(0))
    step = tf.function(model.train_step)
    for _ in range(2):
        step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        logs = step(batch)
    float(logs["total_loss"])
    elapsed = (time.perf_counter() - start) / steps
    per_labelled = methods.images_per_labelled_image(exp)
    return {"preset": name, "precision": precision, "B": exp.batch_size,
            "B_u": exp.unsup_batch_size, "images_per_labelled": per_labelled,
            "step_s": round(elapsed, 3),
            "labelled_img_per_s": round(exp.batch_size / elapsed, 1),
            "network_img_per_s": round(exp.batch_size * per_labelled / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--presets", default=DEFAULT_PRESETS)
    parser.add_argument("--mixed_bfloat16", action="store_true",
                        help="Also time every preset with precision=mixed_bfloat16.")
    args = parser.parse_args()
    rows = []
    for name in args.presets.split(","):
        for precision in ("float32", "mixed_bfloat16") if args.mixed_bfloat16 else ("float32",):
            rows.append(measure(name, args.steps, precision))
            print(rows[-1], flush=True)
    base = next((r["network_img_per_s"] for r in rows if r["preset"] == "supervised"), None)
    for row in rows:
        if base:
            row["vs_supervised"] = round(row["network_img_per_s"] / base, 2)
    common.save("method_step_throughput", rows,
                ["preset", "precision", "B", "B_u", "images_per_labelled", "step_s",
                 "labelled_img_per_s", "network_img_per_s", "vs_supervised"],
                notes="network images = forward-pass images (VAT perturbed passes included); "
                      "vs_supervised = network images/s over the supervised step's.")


if __name__ == "__main__":
    main()
