"""ResNet-50 v2 at 224x224, forward + backward, as achieved GFLOP/s over this machine's matmul.

Times the Trainer's own train step (S4LModel, ImageNet supervised preset: ResNet-50 v2 ff 4,
1000 classes, SGD) on a fixed batch, and a 4096x4096 matmul in the same process. FLOPs come
from TensorFlow's profiler on the frozen forward graph (2 FLOPs per multiply-add); a training
step is counted as 3x the forward FLOPs (forward, input gradients, weight gradients).
Goal: the step reaches at least 50 % of the matmul GFLOP/s.

  .venv/bin/python benchmarks/resnet50_gflops.py [--batch 32] [--steps 4] [--mixed_bfloat16]
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
from tensorflow.python.framework import convert_to_constants  # noqa: E402

from benchmarks import common  # noqa: E402
from modules.trainer import training  # noqa: E402
from pipeline import presets  # noqa: E402


def matmul_gflops(dtype: tf.DType, size: int = 4096, repeats: int = 10) -> float:
    a = tf.random.normal([size, size], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32)))
    float(matmul(a, b))
    start = time.perf_counter()
    for _ in range(repeats):
        float(matmul(a, b))
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_flops_per_image(model) -> int:
    forward = tf.function(lambda x: model(x, training=False)["classes"])
    concrete = forward.get_concrete_function(tf.TensorSpec([1, 224, 224, 3], tf.float32))
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops


def measure(precision: str, batch: int, steps: int) -> dict:
    exp = presets.get("supervised", "imagenet").replace(batch_size=batch, precision=precision)
    model = training.build_model(exp)
    flops = forward_flops_per_image(model)
    rng = np.random.default_rng(0)
    data = {"labelled": {
        "image": tf.constant(rng.uniform(-1, 1, (batch, 224, 224, 3)).astype(np.float32)),
        "label": tf.constant(rng.integers(0, 1000, batch).astype(np.int32))}}
    step = tf.function(model.train_step)
    step(data)
    start = time.perf_counter()
    for _ in range(steps):
        logs = step(data)
    float(logs["total_loss"])
    elapsed = (time.perf_counter() - start) / steps
    achieved = 3 * flops * batch / elapsed / 1e9
    peak = matmul_gflops(tf.bfloat16 if precision == "mixed_bfloat16" else tf.float32)
    return {"precision": precision, "batch": batch, "forward_gflop_per_image":
            round(flops / 1e9, 2), "images_per_s": round(batch / elapsed, 2),
            "achieved_gflops": round(achieved, 1), "matmul_gflops": round(peak, 1),
            "fraction_of_matmul": round(achieved / peak, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--mixed_bfloat16", action="store_true")
    args = parser.parse_args()
    rows = [measure("float32", args.batch, args.steps)]
    if args.mixed_bfloat16:
        rows.append(measure("mixed_bfloat16", args.batch, args.steps))
    common.save("resnet50_gflops", rows,
                ["precision", "batch", "forward_gflop_per_image", "images_per_s",
                 "achieved_gflops", "matmul_gflops", "fraction_of_matmul"],
                notes="training step = 3 x forward FLOPs; goal fraction_of_matmul >= 0.5")


if __name__ == "__main__":
    main()
