"""Label efficiency on Fashion-MNIST: every method at 1 % and 10 % labels, seeds 0-2.

Each (preset, labels, seed) is one run of the real pipeline (`beam_runner.py`) with the
preset's Fashion-MNIST values: the small-image recipe and the same labelled epochs (the same
optimizer steps) for every single-network method (docs/recipe.md), evaluated by TFMA on the
official 10,000 test images. With `--validation_images N` the runs evaluate on N held-out
training images instead and write to results/label_efficiency_validation/ (tuning: the test
set is not read).
Every finished run writes results/label_efficiency/<preset>-<labels>-seed<k>.json, and a run
whose file exists is skipped while the preset still gives the experiment it recorded, so the
table fills up over several sittings; a preset that has changed since runs again, and until it
has, its old result stays out of the table (the notes name it).
Every method of one (labels, seed) runs in one pipeline root, the stages a method builds on
first (pseudo_labels after supervised; moam_step_1, _2, _3 in turn): a stage an earlier run
trained comes from the TFX cache, so each run trains one network and fits the 20 minutes.
One sitting at a time per (labels, seed): a second one stops with an error naming the root
(other labels or seeds can run beside it).
Multi-stage presets also report the stages they build on; `method_train_min` adds up the fit
time of every network a method trained, whichever run trained it.

  .venv/bin/python benchmarks/label_efficiency.py --presets supervised,s4l_rotation \
      --labels 10pct --seeds 0            # run what is missing, then print the table
  .venv/bin/python benchmarks/label_efficiency.py --table_only

A variant of the grid (a recipe change measured before it becomes the presets' default) runs
the same cells with `--set` overrides, in the same pipeline roots (so the stages the variant
leaves alone come from the cache), into its own results and tables,
results/label_efficiency[_validation]_<variant>:

  .venv/bin/python benchmarks/label_efficiency.py --variant weak \
      --set labelled_augment=weak --presets supervised --labels 1pct

Reported per run: the final model's TFMA top-1/top-5 (never a best-ever value), the median
of the last three in-training evaluations where the preset evaluates during training, wall
time and training images per second (network images, `methods.images_per_labelled_image`,
over the Trainer's fit time). Rotation models also report the rotation-averaged top-1.
The `machines` column says which CPU ran which seed. Beside the equal-steps table,
results/label_efficiency_equal_time.md compares the methods at equal training minutes (10, 20
and 30), per CPU kind, from the evaluations during training (`tables.equal_time`).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import common  # noqa: E402
from benchmarks import label_efficiency_experiments as experiments  # noqa: E402
from benchmarks import label_efficiency_tables as tables  # noqa: E402

RUNS_DIR = os.path.join(REPO, "runs", "label_efficiency")
RESULTS = os.path.join(common.RESULTS_DIR, "label_efficiency")
DEFAULT_PRESETS = ("supervised,s4l_rotation,s4l_rotation_upright,s4l_exemplar,"
                   "s4l_exemplar_upright,vat,vat_entmin,pseudo_labels,moam_step_3,fixmatch,"
                   "fixmatch_pseudo_labels,fixmatch_pseudo_labels_round_2,"
                   "moam_fixmatch_step_3")
# Set by --validation_images: evaluate on held-out training images, results apart.
VALIDATION = {"images": 0}
# Set by --variant and --set: the grid with overrides, results apart.
VARIANT: dict = {"name": "", "overrides": ()}


def use_validation(images: int) -> None:
    """Points the runs and results at the validation variant of the table."""
    global RUNS_DIR, RESULTS
    VALIDATION["images"] = images
    if images:
        RUNS_DIR = os.path.join(REPO, "runs", "label_efficiency_validation")
    RESULTS = os.path.join(common.RESULTS_DIR, table_name())


def use_variant(name: str, overrides: list[str]) -> None:
    """Runs the cells with `overrides` (`--set` items) and keeps their results apart."""
    global RESULTS
    if bool(name) != bool(overrides):
        raise ValueError("--variant and --set go together: name the variant its overrides make")
    if name and not name.replace("_", "").isalnum():
        raise ValueError(f"--variant {name!r}: use letters, digits and underscores")
    VARIANT.update(name=name, overrides=tuple(overrides))
    RESULTS = os.path.join(common.RESULTS_DIR, table_name())


def table_name() -> str:
    name = "label_efficiency_validation" if VALIDATION["images"] else "label_efficiency"
    return f"{name}_{VARIANT['name']}" if VARIANT["name"] else name


def result_path(preset: str, labels: str, seed: int) -> str:
    return os.path.join(RESULTS, f"{preset}-{labels}-seed{seed}.json")


def _stage_row(stage: dict, name: str) -> dict:
    record = common.training_record(stage)
    history = record.get("eval_history", {}).get("val_top1", [])
    exp = record.get("experiment", {})
    row = {"method": name, "top1": stage.get("top1"), "top5": stage.get("top5"),
           "median_last3_top1": statistics.median(history[-3:]) if history else None,
           "rot_avg_top1": record.get("final_eval", {}).get("rot_avg_top1"),
           "epochs": exp.get("schedule_epochs", [None])[-1],
           "steps": record.get("final_step"), "blessed": stage.get("blessed"),
           "train_s": record.get("train_seconds"), "experiment": exp,
           "eval_curve": tables.eval_curve(record)}
    if record.get("train_seconds") and exp:
        from modules.trainer import experiment, methods

        images = record["final_step"] * exp["batch_size"] * (
            methods.images_per_labelled_image(experiment.Experiment.from_dict(exp)))
        row["train_images_per_s"] = round(images / record["train_seconds"], 1)
    return row


def run_dir(labels: str, seed: int) -> str:
    """One pipeline root per (labels, seed), shared by every method: a stage that another
    method's run already trained (pseudo_labels' labeller, MOAM steps 1-2) comes from the TFX
    cache, so each run trains one network."""
    return os.path.join(RUNS_DIR, f"{labels}-seed{seed}")


def runner_args(preset: str, labels: str, seed: int, data_path: str) -> list[str]:
    """`beam_runner.py`'s arguments for one cell of the table."""
    args = [*experiments.cell_flags(preset, labels, seed, VARIANT["overrides"]),
            "--output_dir", run_dir(labels, seed),
            "--pipeline_name", f"le-{labels}-{seed}", "--min_top1", "0"]
    if VALIDATION["images"]:
        args += ["--validation_images", str(VALIDATION["images"])]
    return args + (["--data_path", data_path] if data_path else [])


def _summary_copy(preset: str, labels: str, seed: int) -> str:
    """Where a run's summary.json is kept (the shared root's own is overwritten by the next
    run), for `refresh`."""
    return os.path.join(run_dir(labels, seed), _summary_name(preset, VARIANT["name"]))


def _summary_name(preset: str, variant: str) -> str:
    return f"summary-{preset}-{variant}.json" if variant else f"summary-{preset}.json"


def _trained_before(stage: dict, start: float) -> bool:
    """Whether the stage's network came from the TFX cache (trained by an earlier run)."""
    if not stage.get("tensorboard_logdir"):
        return False
    path = common.training_record_path(stage)
    return os.path.exists(path) and os.path.getmtime(path) < start


def _with_method_train_time(rows: list[dict]) -> list[dict]:
    """Adds each stage's cumulative fit time: what the method up to that stage cost to train,
    whichever run trained its earlier stages."""
    total = 0.0
    for row in rows:
        total += row.get("train_s") or 0.0
        row["method_train_s"] = round(total, 1)
    return rows


def run_one(preset: str, labels: str, seed: int, data_path: str) -> dict:
    """Runs the pipeline for one cell of the table and saves its result file."""
    args = runner_args(preset, labels, seed, data_path)
    out = args[args.index("--output_dir") + 1]
    command = [sys.executable, os.path.join(REPO, "beam_runner.py"), *args]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, ".lock"), "w") as lock:
        # The cells of one (labels, seed) share a metadata store and summary.json: one at a time.
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"{out} is in use by another label_efficiency run of {labels} seed {seed}; "
                "wait for it, or run other labels or seeds meanwhile") from None
        start = time.time()
        subprocess.run(command, check=True, cwd=REPO)
        wall = time.time() - start
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    shutil.copy(os.path.join(out, "summary.json"), _summary_copy(preset, labels, seed))
    stages = summary.get("stages") or {preset: summary}
    rows = _with_method_train_time(
        [dict(_stage_row(stage, name), preset=preset, labels=labels, seed=seed,
              from_cache=_trained_before(stage, start))
         for name, stage in stages.items()])
    final = rows[-1]
    exp = summary["experiment"]
    result = {"preset": preset, "labels": labels, "seed": seed, "wall_time_s": round(wall, 1),
              "variant": VARIANT["name"],
              "overrides": list(experiments.overrides_for(preset, VARIANT["overrides"])),
              "command": " ".join(command[1:]), "stages": rows,
              "top1": final["top1"], "top5": final["top5"],
              "experiment": exp,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": common.machine(), "git_revision": common.git_revision()}
    os.makedirs(RESULTS, exist_ok=True)
    with open(result_path(preset, labels, seed), "w") as f:
        json.dump(result, f, indent=1)
    return result


def _summary_of(result: dict) -> str | None:
    """The summary of the run that wrote `result`: the per-preset copy in its output
    directory, or the summary.json of an older one-root-per-cell run; None where gone."""
    command = result.get("command", "").split()
    if "--output_dir" not in command:
        return None
    out = command[command.index("--output_dir") + 1]
    copy = os.path.join(out, _summary_name(result["preset"], result.get("variant", "")))
    if os.path.exists(copy):
        return copy
    # A shared root's summary.json belongs to whichever cell ran last: only an old
    # one-root-per-cell directory's is this result's.
    cell = f"{result['preset']}-{result['labels']}-seed{result['seed']}"
    old = os.path.join(out, "summary.json")
    return old if os.path.basename(os.path.normpath(out)) == cell and os.path.exists(old) else None


def refresh() -> None:
    """Re-derives the stage rows of every result file from its run's records (after the
    reported fields change); results whose run's summary is gone are left as they are."""
    if not os.path.isdir(RESULTS):
        return
    for name in sorted(n for n in os.listdir(RESULTS) if n.endswith(".json")):
        path = os.path.join(RESULTS, name)
        with open(path) as f:
            result = json.load(f)
        summary_path = _summary_of(result)
        if summary_path is None:
            continue
        with open(summary_path) as f:
            summary = json.load(f)
        cached = {row["method"]: row.get("from_cache", False) for row in result["stages"]}
        stages = summary.get("stages") or {result["preset"]: summary}
        result["stages"] = _with_method_train_time(
            [dict(_stage_row(stage, stage_name), preset=result["preset"],
                  labels=result["labels"], seed=result["seed"],
                  from_cache=cached.get(stage_name, False))
             for stage_name, stage in stages.items()])
        result["top1"], result["top5"] = result["stages"][-1]["top1"], result["stages"][-1]["top5"]
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


def current_results() -> tuple[list[dict], list[str]]:
    """The result files whose preset still trains the same model, and the names of those
    whose preset has changed since (they stay out of the table until they run again)."""
    results, stale = [], []
    if os.path.isdir(RESULTS):
        for name in sorted(os.listdir(RESULTS)):
            if name.endswith(".json"):
                with open(os.path.join(RESULTS, name)) as f:
                    result = json.load(f)
                try:
                    changed = changed_since(result)
                except (KeyError, ValueError) as e:  # a preset or labels that no longer exist
                    print(f"{name}: cannot rebuild its preset ({e}); left out", flush=True)
                    changed = ["preset"]
                if changed:
                    stale.append(name[:-len(".json")])
                else:
                    results.append(result)
    return results, stale


def changed_since(result: dict) -> list[str]:
    """What makes a recorded result stale now: fields its preset (with the overrides it ran
    with) sets differently, and, in a variant, overrides other than the variant's."""
    changed = experiments.stale_fields(result)
    if VARIANT["name"]:
        wanted = experiments.overrides_for(result["preset"], VARIANT["overrides"])
        if tuple(result.get("overrides", ())) != wanted:
            changed.append("overrides")
    return changed


def with_stages(names: list[str]) -> list[str]:
    """`names` with the stages each builds on before it, once each (moam_step_3 ->
    moam_step_1, moam_step_2, moam_step_3): the order in which one pipeline root trains them
    so that every run trains one network."""
    from pipeline import presets

    ordered: list[str] = []
    for name in names:
        for stage in presets.stages(name):
            if stage.name not in ordered:
                ordered.append(stage.name)
    return ordered


def missing_cells(presets: list[str], labels: list[str], seeds: list[int],
                  results: list[dict]) -> str:
    """The cells of the grid with neither a result file nor a stage row in another method's
    result, by seed ("" when none is missing)."""
    covered = {(row["method"], result["labels"], result["seed"])
               for result in results for row in result["stages"]}
    parts = []
    for seed in seeds:
        cells = [f"{preset}-{lab}" for lab in labels for preset in presets
                 if not os.path.exists(result_path(preset, lab, seed))
                 and (preset, lab, seed) not in covered]
        if cells:
            listed = (f"all {len(cells)}" if len(cells) == len(presets) * len(labels)
                      else ", ".join(cells))
            parts.append(f"seed {seed}: {listed}")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=DEFAULT_PRESETS)
    parser.add_argument("--labels", default="1pct,10pct")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data_path", default="", help="Fashion-MNIST IDX folder.")
    parser.add_argument("--table_only", action="store_true")
    parser.add_argument("--refresh", action="store_true",
                        help="Re-derive the result files from their runs' records first.")
    parser.add_argument("--validation_images", type=int, default=0,
                        help="Tune: evaluate on this many held-out training images, not the "
                             "test set; results go to results/label_efficiency_validation/.")
    parser.add_argument("--variant", default="",
                        help="Name of a variant of the grid (with --set): its results go to "
                             "results/label_efficiency[_validation]_<variant>/.")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="[STAGE.]FIELD=VALUE",
                        help="The variant's overrides, as beam_runner.py takes them.")
    args = parser.parse_args()
    try:
        use_variant(args.variant, args.overrides)
    except ValueError as e:
        parser.error(str(e))
    use_validation(args.validation_images)
    if args.refresh:
        refresh()
    # The presets the variant's overrides cannot run with, and why.
    rejected = {preset: reason for preset in with_stages(f"{args.presets},{DEFAULT_PRESETS}"
                                                         .split(","))
                if (reason := experiments.rejection(preset, VARIANT["overrides"]))}
    if not args.table_only:
        for labels in args.labels.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                for preset in with_stages(args.presets.split(",")):
                    if preset in rejected:
                        print(f"skip {preset}: not with this variant ({rejected[preset]})",
                              flush=True)
                        continue
                    path = result_path(preset, labels, seed)
                    if os.path.exists(path):
                        with open(path) as f:
                            changed = changed_since(json.load(f))
                        if not changed:
                            print(f"skip {preset} {labels} seed {seed}: result exists",
                                  flush=True)
                            continue
                        print(f"{preset} {labels} seed {seed}: the preset changed since its "
                              f"result ({', '.join(changed)}); running it again", flush=True)
                    print(f"run {preset} {labels} seed {seed}", flush=True)
                    run_one(preset, labels, seed, args.data_path)
    results, stale = current_results()
    rows = tables.table(results)
    if rows:
        tables.plot(rows, os.path.join(common.RESULTS_DIR, f"{table_name()}.png"))
        tables.time_plot(results, os.path.join(common.RESULTS_DIR,
                                               f"{table_name()}_time.png"))
    gaps = ""
    if stale:
        gaps += (" Left out, their preset has changed since they ran (run them again): "
                 + ", ".join(stale) + ".")
        print(f"left out of the table (preset changed since): {', '.join(stale)}")
    # The whole grid, whatever this call ran: the table holds every result file.
    grid = [preset for preset in with_stages(DEFAULT_PRESETS.split(","))
            if preset not in rejected]
    missing = missing_cells(grid, list(experiments.FRACTION), [0, 1, 2], results)
    if missing:
        gaps += f" Not run yet: {missing}."
        print(f"not run yet: {missing}")
    evaluated_on = (f"{VALIDATION['images']:,} held-out training images (validation)"
                    if VALIDATION["images"] else "Fashion-MNIST test set (10,000 images)")
    variant = (f" Variant {VARIANT['name']}: every cell with "
               + " ".join(f"--set {item}" for item in VARIANT["overrides"]) + "."
               if VARIANT["name"] else "")
    notes = (f"{evaluated_on}; final models, TFMA; per-run files in "
             f"results/{table_name()}/." + variant + gaps)
    common.save(table_name(), rows,
                ["method", "labels", "seeds", "top1_median", "top1_mean", "top1_spread",
                 "top5_median", "median_last3_top1", "rot_avg_top1", "epochs", "train_min",
                 "method_train_min", "wall_min", "train_img_per_s", "machines"],
                notes=notes)
    budgets = ", ".join(f"{b}" for b in tables.EQUAL_TIME_BUDGETS_MIN)
    time_rows = tables.equal_time(results)
    common.save(f"{table_name()}_equal_time", time_rows,
                ["method", "labels", "machine", "seeds",
                 *(f"top1_{b}min" for b in tables.EQUAL_TIME_BUDGETS_MIN), "method_train_min"],
                notes=f"{evaluated_on}; top-1 (%) after {budgets} training minutes (wall clock "
                      "of every network the method trained), median over the seeds one CPU "
                      "kind ran: the final model's TFMA top-1 where the method finished within "
                      "the budget, else its last evaluation during training by then (before "
                      "its learning rate decayed, so below what a run scheduled for that time "
                      "would reach), blank if none yet. Runs that shared their machine with "
                      "other jobs took longer than alone, so their cells are lower bounds.")
    final_models = frozenset(DEFAULT_PRESETS.split(","))
    common.save(f"{table_name()}_targets", tables.targets(rows, time_rows, final_models),
                ["target", "measured", "seeds", "met", "margin"],
                notes="Medians over the seeds in label_efficiency.md; margin = measured - "
                      "needed, in top-1 points (negative: missed by that much); for the "
                      "time budget, minutes over it (the worst cell), from "
                      f"{table_name()}_equal_time.md." + gaps)


if __name__ == "__main__":
    main()
