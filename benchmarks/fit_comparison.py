"""The Trainer's supervised step against a plain tf-keras `model.fit` of the same model.

Both train the Fashion-MNIST supervised preset's network (the small-image recipe's CIFAR
pre-activation ResNet-20 + linear head, SGD with Nesterov momentum 0.9, same LR schedule,
weight decay on kernels) on the same tf.data pipeline (one fixed batch of the preset's 64
32x32 images, repeated, prefetched), for the same number of steps, through `fit`. The plain
model uses Keras' own compile/fit with sparse categorical cross-entropy; the Trainer's model
runs S4LModel.train_step (loss terms, trackers, L2 penalty). Goal: the Trainer reaches at
least 0.95 of the plain model's images per second.

  .venv/bin/python benchmarks/fit_comparison.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from benchmarks import common  # noqa: E402
from modules.trainer import model_resnet_v2, schedules, training  # noqa: E402
from pipeline import presets  # noqa: E402


def _data(exp, labelled: bool) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (exp.batch_size, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, exp.num_classes, exp.batch_size).astype(np.int32)
    element = {"labelled": {"image": images, "label": labels}} if labelled else (images, labels)
    return tf.data.Dataset.from_tensors(element).repeat().prefetch(tf.data.AUTOTUNE)


def plain_model(exp) -> keras.Model:
    backbone = model_resnet_v2.build_backbone(exp.architecture, exp.filters_factor,
                                              exp.weight_decay, exp.bn_momentum,
                                              exp.bn_epsilon, exp.image_size)
    logits = model_resnet_v2.build_head(exp.num_classes, "classes", exp.weight_decay)(
        backbone.output["pre_logits"])
    model = keras.Model(backbone.input, logits)
    optimizer = keras.optimizers.SGD(schedules.learning_rate(exp), momentum=exp.momentum,
                                     nesterov=exp.nesterov)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _time_fit(model, dataset, steps: int) -> float:
    model.fit(dataset, steps_per_epoch=5, epochs=1, verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # float32 for both: the plain model runs under the global (float32) Keras policy.
    exp = presets.get("supervised", "fashion_mnist").replace(num_labelled_examples=6000,
                                                            precision="float32")
    trainer, plain = training.build_model(exp), plain_model(exp)
    rates = {"trainer": [], "plain": []}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both
        rates["trainer"].append(args.steps * exp.batch_size / _time_fit(
            trainer, _data(exp, True), args.steps))
        rates["plain"].append(args.steps * exp.batch_size / _time_fit(
            plain, _data(exp, False), args.steps))
    rows = [{"model": name, "batch": exp.batch_size, "steps": args.steps,
             "images_per_s_median": round(statistics.median(r), 1),
             "images_per_s_runs": ", ".join(f"{v:.0f}" for v in r)} for name, r in rates.items()]
    ratio = rows[0]["images_per_s_median"] / rows[1]["images_per_s_median"]
    rows[0]["vs_plain"] = round(ratio, 3)
    common.save("fit_comparison", rows,
                ["model", "batch", "steps", "images_per_s_median", "images_per_s_runs",
                 "vs_plain"],
                notes=f"goal: trainer >= 0.95 x plain; measured {ratio:.3f}")


if __name__ == "__main__":
    main()
