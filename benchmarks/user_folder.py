"""A user's own small image folder: 10 % labels, no training flag but the data path.

Writes scikit-learn's digits (1,797 8x8 grayscale scans of handwritten digits, shipped with
scikit-learn: nothing is downloaded) as DIR/{train,test}/<digit>/<i>.png, a stratified 80/20
split with seed 0 (1,437 training and 360 test images). Then, per preset asked:
  1. the pipeline: `beam_runner.py --data_path DIR --preset P --output_dir ...` (the source,
     the small-image recipe, the 10 % labels and the schedule all come from the data);
  2. for the supervised preset, the plain tf-keras script (benchmarks/plain_small_image.py)
     on the same labelled images, for the steps and batch the Trainer ran.
Reported: the final models' top-1 on the 360 test images (the pipeline's TFMA value, never a
best-ever one), steps and minutes.

  .venv/bin/python benchmarks/user_folder.py [--presets supervised] [--seeds 0] [--no_plain]
      [--result user_folder]

`--seeds` runs each preset (and the plain script) once per seed: the pipeline's `--seed`
(its labelled subset and its training draws) and the plain script's, on that run's split.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import common  # noqa: E402

RUNS = os.path.join(REPO, "runs", "user_folder")
COLUMNS = ["run", "seed", "top1", "steps", "batch", "train_min", "labelled", "eval_images"]


def write_digits(root: str) -> str:
    """DIR/{train,test}/<digit>/<i>.png from scikit-learn's digits (values 0-16 -> 0-255).

    Written beside `root` and renamed into place when whole, so an interrupted write is
    redone, never reused half-written."""
    if os.path.isdir(root):
        return root
    import shutil

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train, test = train_test_split(indices, test_size=0.2, random_state=0,
                                   stratify=digits.target)
    partial = root.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    for part, chosen in (("train", train), ("test", test)):
        for i in chosen:
            folder = os.path.join(partial, part, str(digits.target[i]))
            os.makedirs(folder, exist_ok=True)
            pixels = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels, "L").save(os.path.join(folder, f"{i}.png"))
    os.rename(partial, root)
    return root


def run_pipeline(data: str, preset: str, seed: int) -> dict:
    out = os.path.join(RUNS, preset, f"seed_{seed}")
    start = time.time()
    subprocess.run([sys.executable, os.path.join(REPO, "beam_runner.py"), "--data_path", data,
                    "--preset", preset, "--seed", str(seed), "--output_dir", out], check=True)
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    # A run of one stage summarises it at the top level; of several, under "stages".
    stage = summary["stages"][preset] if "stages" in summary else summary
    record = common.training_record(stage)
    return {"run": f"pipeline {preset}", "seed": seed, "top1": round(stage["top1"], 4),
            "steps": record.get("final_step"), "batch": record["experiment"]["batch_size"],
            "lr": record["experiment"]["lr"] * record["experiment"]["batch_size"]
            / record["experiment"]["lr_scale_batch_size"],
            "train_min": round(record.get("train_seconds", 0) / 60, 1),
            "wall_min": round((time.time() - start) / 60, 1),
            "labelled": stage["splits"]["labelled"], "eval_images": stage["eval_examples"],
            "examples_dir": _examples_dir(out)}


def _examples_dir(out: str) -> str:
    (found,) = glob.glob(os.path.join(out, "tfx", "S4LExampleGen", "examples", "*"))
    return found


def run_plain(examples_dir: str, steps: int, batch: int, lr: float, seed: int) -> dict:
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "plain_small_image.py"),
         examples_dir, "--steps", str(steps), "--batch_size", str(batch), "--lr", str(lr),
         "--seed", str(seed)],
        check=True, capture_output=True, text=True)
    plain = json.loads(result.stdout.strip().splitlines()[-1])
    return {"run": "plain tf-keras script", "seed": seed, "top1": plain["top1"],
            "steps": plain["steps"],
            "batch": plain["batch_size"], "lr": plain["lr"],
            "train_min": round(plain["seconds"] / 60, 1), "labelled": plain["labelled"],
            "eval_images": plain["eval"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="supervised")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--no_plain", action="store_true")
    parser.add_argument("--result", default="user_folder",
                        help="name of the result files in benchmarks/results/")
    args = parser.parse_args()
    data = write_digits(os.path.join(RUNS, "digits"))
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for preset in args.presets.split(","):
            row = run_pipeline(data, preset, seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if preset == "supervised" and not args.no_plain:
                rows.append(run_plain(row["examples_dir"], row["steps"], row["batch"],
                                      row["lr"], seed))
                print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row.pop("examples_dir", None)
    common.save(args.result, rows, COLUMNS,
                notes="scikit-learn digits as an image folder (1,437 train / 360 test PNGs, "
                      "8x8 grayscale, stratified 80/20 split, seed 0); pipeline: "
                      "`beam_runner.py --data_path DIR` (+ --preset, --output_dir), defaults "
                      "otherwise (10 % labels, small-image recipe, schedule rule); plain: "
                      "benchmarks/plain_small_image.py on the run's labelled split, same steps, "
                      "batch and LR; top-1 of the final models on the 360 test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
