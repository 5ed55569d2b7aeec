"""How many unlabelled images a trained labeller labels right, by the views it averages over.

A pseudo-labelled stage (`pseudo_labels`, MOAM step 2) trains on its labeller's argmax for
every image outside the labelled split: upright (`pseudo_label_views=upright`, the original)
or averaged over the views the labeller's classifier trained on (`averaged`: both mirror
images and, for rotation models that classify turns, the four turns). This script measures
those labels against the labels the source stored for the unlabelled split (Fashion-MNIST and
image folders have them; the pipeline never trains on them), for the upright view, the mirror
pair, the four turns and all eight views, so the choice can be made on a validation run
before any test image is read.

  .venv/bin/python benchmarks/pseudo_label_views.py \
      --run_dir runs/label_efficiency_validation/1pct-seed0 --stage moam_fixmatch_step_1

RUN_DIR is a pipeline's --output_dir: the examples and the stage's model are those its
summary.json names (the last finished run), the Transform graph the one ML Metadata records
for that run. Writes results/pseudo_label_views.json and .md
(`--name` to change).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402

from benchmarks import common  # noqa: E402
from modules import features  # noqa: E402
from modules.trainer import experiment, views  # noqa: E402
from pipeline import layout  # noqa: E402
from pipeline.reporting import run_summary  # noqa: E402

COLUMNS = ["labeller", "views", "count", "top1", "images", "is_averaged_views"]
# View sets: (mirror images, turns) of each image whose class logits are averaged.
VIEW_SETS = {"upright": (False, False), "mirror pair": (True, False),
             "four turns": (False, True), "mirror pair x four turns": (True, True)}


def _run_outputs(run_dir: str, stage: str) -> tuple[dict, str]:
    """(the stage's entry of RUN_DIR/summary.json, the run's Transform graph directory)."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no summary.json (did the run finish?)")
    with open(path) as f:
        summary = json.load(f)
    if stage not in summary.get("stages", {}):
        raise ValueError(f"{path}: no stage {stage!r}; stages: {', '.join(summary['stages'])}")
    transform_dir = run_summary.latest_output_uri(summary["metadata"], summary["pipeline_name"],
                                                  layout.TRANSFORM, "transform_graph")
    if not transform_dir:
        raise FileNotFoundError(f"{summary['metadata']}: no Transform output recorded")
    return summary["stages"][stage], transform_dir


def measure(run_dir: str, stage: str, batch_size: int = 500) -> list[dict]:
    """One row per view set: the share of unlabelled images whose averaged logits' argmax is
    the stored label."""
    outputs, transform_dir = _run_outputs(run_dir, stage)
    exp = experiment.Experiment.from_dict(common.training_record(outputs)["experiment"])
    transform = tft.TFTransformOutput(transform_dir)
    files = sorted(glob.glob(os.path.join(outputs["examples_dir"],
                                          f"Split-{features.UNLABELLED_SPLIT}", "*")))
    module = tf.saved_model.load(os.path.join(outputs["model_dir"], "Format-Hub",
                                              "classification"))
    layer = transform.transform_features_layer()
    raw_spec = transform.raw_feature_spec()
    right = dict.fromkeys(VIEW_SETS, 0)
    total = 0
    for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size):
        transformed = layer(tf.io.parse_example(serialized, raw_spec))
        images = transformed[features.TRANSFORMED_IMAGE_KEY]
        labels = tf.cast(transformed[features.TRANSFORMED_LABEL_KEY], tf.int64).numpy()
        logits = {(mirror, turn): module(tf.image.rot90(
            tf.image.flip_left_right(images) if mirror else images, turn), False).numpy()
            for mirror in (False, True) for turn in range(4)}
        for name, (mirror, turns) in VIEW_SETS.items():
            keys = [(m, t) for m in ((False, True) if mirror else (False,))
                    for t in (range(4) if turns else (0,))]
            averaged = np.mean([logits[key] for key in keys], axis=0)
            right[name] += int((averaged.argmax(axis=-1) == labels).sum())
        total += len(labels)
    averaged_views = (exp.flip_lr, views.classifies_turns(exp))
    return [{"labeller": stage, "views": name,
             "count": (2 if mirror else 1) * (4 if turns else 1),
             "top1": round(100 * right[name] / total, 2), "images": total,
             "is_averaged_views": "yes" if (mirror, turns) == averaged_views else ""}
            for name, (mirror, turns) in VIEW_SETS.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="The pipeline's --output_dir.")
    parser.add_argument("--stage", required=True, help="The labeller's stage name.")
    parser.add_argument("--name", default="pseudo_label_views")
    args = parser.parse_args()
    rows = measure(args.run_dir, args.stage)
    common.save(args.name, rows, COLUMNS,
                notes=f"Unlabelled split of {args.run_dir}, against the labels the source "
                      "stored; is_averaged_views marks what pseudo_label_views=averaged "
                      "uses for this labeller (upright is the default).")


if __name__ == "__main__":
    main()
