"""A plain tf-keras script of the small-image recipe: the reference the pipeline must reach.

Independent of the pipeline's modules (its own network, input pipeline and schedule), it
trains on the labelled split that a pipeline run's S4LExampleGen wrote (so both see the same
labelled images) and reports the final model's top-1 on that run's eval split:
pre-activation CIFAR ResNet-20 (width 16), images zero-padded to 32x32, pad-4 random crop
and horizontal flip, SGD with Nesterov momentum 0.9, linear warm-up over 3 % of the steps
then cosine to 0, L2 penalty wd/2 * |w|^2 on kernels, batch-norm momentum 0.98.

  .venv/bin/python benchmarks/plain_small_image.py EXAMPLES_DIR --steps 3000 \
      [--batch_size 64] [--lr 0.05] [--no_flip] [--seed 0] [--init he_normal]

EXAMPLES_DIR holds Split-labelled/ and Split-eval/ (GZIP TFRecords of tf.Examples with
image/encoded and image/class/label). Prints one JSON line: top1, steps, seconds.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

SIZE = 32


def load_split(examples_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 32, 32, 3] (zero-padded, centred) and int labels [N]."""
    files = sorted(glob.glob(os.path.join(examples_dir, f"Split-{split}", "*")))
    if not files:
        raise FileNotFoundError(f"no files in {examples_dir}/Split-{split}/")
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
    images, labels = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.io.parse_single_example(record, spec)
        image = tf.io.decode_image(example["image/encoded"], channels=3,
                                   expand_animations=False)
        if image.shape[0] > SIZE or image.shape[1] > SIZE:
            raise ValueError(f"an image of {split} is {image.shape[:2]}, over {SIZE}x{SIZE}")
        images.append(tf.image.pad_to_bounding_box(
            image, (SIZE - image.shape[0]) // 2, (SIZE - image.shape[1]) // 2, SIZE, SIZE))
        labels.append(int(example["image/class/label"]))
    return np.stack(images), np.array(labels)


def resnet20(classes: int, weight_decay: float, width: int = 16,
             init: str = "he_normal") -> keras.Model:
    """Pre-activation ResNet-20 (3 stages of 3 basic blocks) with a linear head; `init`
    initialises the convolution kernels (He et al.'s CIFAR ResNets: he_normal)."""
    l2 = keras.regularizers.l2(weight_decay / 2)

    def conv(x, filters, stride=1, kernel=3):
        return keras.layers.Conv2D(filters, kernel, stride, "same", use_bias=False,
                                   kernel_initializer=init, kernel_regularizer=l2)(x)

    def bn_relu(x):
        return keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.98)(x))

    inputs = keras.Input([SIZE, SIZE, 3])
    x = conv(inputs, width)
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(3):
            stride = 2 if stage and not block else 1
            pre = bn_relu(x)
            shortcut = conv(pre, filters, stride, 1) if stride > 1 else x
            y = conv(bn_relu(conv(pre, filters, stride)), filters)
            x = keras.layers.Add()([shortcut, y])
    x = keras.layers.GlobalAveragePooling2D()(bn_relu(x))
    outputs = keras.layers.Dense(classes, kernel_regularizer=l2)(x)
    return keras.Model(inputs, outputs)


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, lr: float, steps: int, warmup: int):
        self.lr, self.steps, self.warmup = lr, steps, max(1, warmup)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.lr * step / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        cosine = 0.5 * self.lr * (1 + tf.cos(math.pi * tf.minimum(progress, 1.0)))
        return tf.where(step < self.warmup, warm, cosine)


def train(examples_dir: str, steps: int, batch_size: int, lr: float, flip: bool,
          seed: int, weight_decay: float = 5e-4, warmup_fraction: float = 0.03,
          init: str = "he_normal", width: int = 16) -> dict:
    keras.utils.set_random_seed(seed)
    x, y = load_split(examples_dir, "labelled")
    x_eval, y_eval = load_split(examples_dir, "eval")
    classes = int(max(y.max(), y_eval.max()) + 1)

    def augment(image, label):
        image = tf.cast(image, tf.float32) / 127.5 - 1.0
        image = tf.image.random_crop(tf.pad(image, [[4, 4], [4, 4], [0, 0]]), [SIZE, SIZE, 3])
        if flip:
            image = tf.image.random_flip_left_right(image)
        return image, label

    data = (tf.data.Dataset.from_tensor_slices((x, y)).repeat().shuffle(len(x), seed=seed)
            .map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))
    model = resnet20(classes, weight_decay, width=width, init=init)
    model.compile(
        optimizer=keras.optimizers.SGD(WarmupCosine(lr, steps, round(warmup_fraction * steps)),
                                       momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    start = time.time()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=2)
    seconds = time.time() - start
    _, top1 = model.evaluate(x_eval.astype(np.float32) / 127.5 - 1.0, y_eval, batch_size=500,
                             verbose=0)
    return {"top1": round(float(top1), 4), "steps": steps, "batch_size": batch_size,
            "lr": lr, "flip": flip, "init": init, "seed": seed, "labelled": len(x),
            "eval": len(x_eval),
            "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("examples_dir")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05, help="0.1 scaled to batch 64")
    parser.add_argument("--no_flip", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default="he_normal",
                        help="convolution kernel initializer (he_normal, glorot_uniform)")
    args = parser.parse_args(argv)
    result = train(args.examples_dir, args.steps, args.batch_size, args.lr,
                   not args.no_flip, args.seed, init=args.init)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
