"""S4LExampleGen conversion throughput on ImageNet-size JPEGs: one worker, two workers, and
the single-process converter that the Beam passes replaced.

Generates an image folder of N JPEGs of about 500x375 (10 classes, 10 % more as test images)
and converts it with the split options of the main job (10 % labelled, 4 shards), each mode in
its own process, timing the whole conversion (Beam start-up included):
  * `loop`: the Beam passes' unit functions in a plain loop in one process;
  * `beam_1`: Beam in this process (`--beam_workers 1`, the default);
  * `beam_2`: what `--beam_workers 2` gives S4LExampleGen: Beam in 2 worker threads of this
    process (`cli.example_gen_beam_args`; no worker start-up; Pillow's decoders and TF's
    record writer release the GIL);
  * `beam_2_processes`: Beam in 2 worker processes (what `--beam_workers 2` gives the other
    Beam components);
  * `replaced@REV` (with `--baseline_rev REV`): `build_splits` of that revision, run from a
    temporary checkout of it.
Every mode must write the same records (checked here: count and digest per split).
Goals: beam_2 >= 1.6x beam_1 on a 2-core machine; beam_1 no slower than the replaced converter.
`--fashion_mnist` converts Debian's Fashion-MNIST instead (the main job's data: 70,000 PNGs of
28x28), which also shows that the main job's splits are the replaced converter's, record for
record.

  .venv/bin/python benchmarks/example_gen_throughput.py [--images 6000] [--baseline_rev REV]
  .venv/bin/python benchmarks/example_gen_throughput.py --fashion_mnist --baseline_rev REV
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import common  # noqa: E402

CLASSES = 10
SIZE = (500, 375)  # width, height: the ImageNet average is about 400x350, often 500x375
MODES = {
    "loop": None,
    "beam_1": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    "beam_2": ["--direct_running_mode=multi_threading", "--direct_num_workers=2"],
    "beam_2_processes": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
}

# Runs in a fresh process with the checkout to test first on sys.path; prints one JSON line.
_CONVERT = """
import hashlib, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
root, out, beam_args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
from pipeline.components.example_gen import build, sources
idx = os.path.join(root, "t10k-labels-idx1-ubyte.gz")
source = (sources.FashionMnistSource(root) if os.path.isfile(idx)
          else sources.ImageFolderSource(root))
import tensorflow as tf
kwargs = {}
if beam_args is not None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    kwargs["make_pipeline"] = lambda: beam.Pipeline(options=PipelineOptions(beam_args))
start = time.perf_counter()
stats = build.build_splits(source, out,
                           build.SplitOptions(labelled_fraction=0.1, num_shards=4), **kwargs)
elapsed = time.perf_counter() - start
digests = {}
for split in stats["splits"]:
    files = sorted(tf.io.gfile.glob(os.path.join(out, f"Split-{split}", "*")))
    records = sorted(r.numpy() for r in tf.data.TFRecordDataset(files, "GZIP"))
    digests[split] = [len(records), hashlib.sha256(b"".join(
        hashlib.sha256(r).digest() for r in records)).hexdigest()[:16]]
print(json.dumps({"seconds": elapsed, "digests": digests,
                  "pass_1_rate": stats.get("conversion", {}).get("records_per_s")}))
"""


def write_images(root: str, count: int, seed: int = 0) -> int:
    """Writes `count` training and count // 10 test JPEGs; returns their total bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for part, n in (("train", count), ("test", count // 10)):
        for i in range(n):
            folder = os.path.join(root, part, f"class_{i % CLASSES}")
            os.makedirs(folder, exist_ok=True)
            # Smooth colour fields plus grain: JPEG sizes like photographs' (tens of KB).
            coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            image = np.asarray(Image.fromarray(coarse).resize(SIZE, Image.BICUBIC),
                               dtype=np.int16)
            image += rng.integers(-12, 13, image.shape, dtype=np.int16)
            path = os.path.join(folder, f"{part}_{i:06d}.jpg")
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                path, format="JPEG", quality=90)
            total += os.path.getsize(path)
    return total


def convert(checkout: str, root: str, out: str, beam_args: list[str] | None) -> dict:
    env = {**os.environ, "PYTHONPATH": checkout, "TF_USE_LEGACY_KERAS": "1"}
    proc = subprocess.run([sys.executable, "-c", _CONVERT, root, out, json.dumps(beam_args)],
                          cwd=checkout, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"conversion in {checkout} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6000, help="training images")
    parser.add_argument("--baseline_rev", default="",
                        help="also time build_splits of this git revision (the replaced one)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--fashion_mnist", action="store_true",
                        help="convert Debian's Fashion-MNIST instead of generated JPEGs")
    args = parser.parse_args()
    modes = [(name, common.REPO, MODES[name]) for name in args.modes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_rev:
            baseline = os.path.join(tmp, "baseline")
            subprocess.run(["git", "worktree", "add", "--detach", baseline, args.baseline_rev],
                           cwd=common.REPO, check=True, capture_output=True)
            modes.insert(0, (f"replaced@{args.baseline_rev}", baseline, None))
        if args.fashion_mnist:
            from pipeline.components.example_gen import sources

            root, images = sources.FASHION_MNIST_DIR, 70_000
        else:
            root = os.path.join(tmp, "images")
            start = time.perf_counter()
            size = write_images(root, args.images)
            images = args.images + args.images // 10
            print(f"{images} JPEGs of {SIZE[0]}x{SIZE[1]}, {size / images / 1024:.0f} KiB on "
                  f"average, written in {time.perf_counter() - start:.0f} s", flush=True)
        rows, digests = [], {}
        try:
            for name, checkout, beam_args in modes:
                result = convert(checkout, root, os.path.join(tmp, f"out-{name}"), beam_args)
                digests[name] = result["digests"]
                rows.append({"mode": name, "images": images,
                             "seconds": round(result["seconds"], 1),
                             "images_per_s": round(images / result["seconds"], 1),
                             "pass_1_images_per_s": result["pass_1_rate"]})
                print(rows[-1], flush=True)
        finally:
            if args.baseline_rev:
                # `baseline`, never the loop's last checkout: run from a worktree, that
                # removed the worktree itself.
                subprocess.run(["git", "worktree", "remove", "--force", baseline],
                               cwd=common.REPO, capture_output=True)
    if args.baseline_rev:  # Forgets the checkout even where removing it failed.
        subprocess.run(["git", "worktree", "prune"], cwd=common.REPO, capture_output=True)
    first = next(iter(digests.values()))
    same = all(d == first for d in digests.values())
    by_mode = {r["mode"]: r["images_per_s"] for r in rows}
    for row in rows:
        if "beam_1" in by_mode:
            row["vs_beam_1"] = round(row["images_per_s"] / by_mode["beam_1"], 2)
        row["same_records"] = digests[row["mode"]] == first
    data = ("Fashion-MNIST (70,000 28x28 PNGs)" if args.fashion_mnist
            else f"{SIZE[0]}x{SIZE[1]} JPEGs, 10 classes")
    common.save("example_gen_throughput" + ("_fashion_mnist" if args.fashion_mnist else ""),
                rows, ["mode", "images", "seconds", "images_per_s", "vs_beam_1",
                       "pass_1_images_per_s", "same_records"],
                notes=f"{data}, 10 % labelled, 4 shards; seconds: the whole conversion, "
                      "Beam start-up included; pass_1_images_per_s: the conversion pass alone "
                      "(first unit's start to last unit's end, worker start-up excluded); "
                      "goals: beam_2 >= 1.6x beam_1, beam_1 >= the replaced converter; "
                      "every mode wrote the same records: "
                      f"{'yes' if same else 'NO'}")
    if not same:
        raise SystemExit("the modes wrote different records: " + json.dumps(digests))


if __name__ == "__main__":
    main()
