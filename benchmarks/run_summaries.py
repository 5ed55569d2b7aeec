"""Tabulates finished pipeline runs: one row per `summary.json`, for ablations.

The label-efficiency table only holds presets as they are. Runs with overrides
(`beam_runner.py ... --set inception_crop=false --train_epochs 96`) are compared here:

  .venv/bin/python benchmarks/run_summaries.py --name ablation_crop_budget \
      runs/exp_nocrop runs/exp_rotation_nocrop

Each row: the run's final TFMA top-1/top-5, rotation-averaged top-1 where recorded, labelled
epochs, crop setting, wall time, the CPU that ran it (name and widest ISA) and the command
that produced it; a multi-stage run (MOAM) also lists every stage's top-1. Written to
results/<name>.json and .md. Run directories live on the machine that trained them, so
`--append` grows a table over sittings: it keeps the rows already in results/<name>.json (a run
of the same name is replaced) and adds the new ones.

A run is its output directory (its summary.json) or a copy of a summary kept beside it: runs
that share one pipeline root (and so its cache) overwrite its summary.json, so keep each as
`summary-<variant>.json` and name that file; its row is `<directory>/<variant>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import common  # noqa: E402

COLUMNS = ["run", "model", "labelled", "epochs", "steps", "inception_crop", "top1", "top5",
           "rot_avg_top1", "stages_top1", "wall_min", "machine", "command"]


def _summary_path_and_name(run: str) -> tuple[str, str]:
    """RUN (a directory or a kept summary file) -> its summary's path and its row's name."""
    if os.path.isdir(run) or not run.endswith(".json"):
        path = os.path.join(run, "summary.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no summary.json (did the run finish?)")
        return path, os.path.basename(os.path.normpath(run))
    if not os.path.exists(run):
        raise FileNotFoundError(f"{run}: no such summary file")
    variant = os.path.basename(run)[:-len(".json")].removeprefix("summary-")
    return run, f"{os.path.basename(os.path.dirname(os.path.abspath(run)))}/{variant}"


def _stages_top1(summary: dict) -> str:
    """Every stage's top-1 of a multi-stage run ("" for one stage)."""
    stages = summary.get("stages") or {}
    if len(stages) < 2:
        return ""
    return "; ".join(f"{name} {100 * stage['top1']:.2f}" for name, stage in stages.items()
                     if stage.get("top1") is not None)


def row(run: str) -> dict:
    """One table row from a run's summary (and the Trainer's experiment.json)."""
    path, name = _summary_path_and_name(run)
    with open(path) as f:
        summary = json.load(f)
    try:
        experiment = summary["experiment"]
        top1, top5 = summary["top1"], summary["top5"]
    except KeyError as e:
        raise ValueError(f"{path}: missing {e.args[0]!r}; not a run summary") from e
    record = common.training_record(summary)
    rot_avg = record.get("final_eval", {}).get("rot_avg_top1")
    # The preset's epochs before the schedule rule fitted them to the data; the Trainer's
    # record holds the schedule it trained (older records lack it).
    trained = record.get("experiment") or experiment
    return {"run": name, "model": summary.get("model"),
            "labelled": summary.get("splits", {}).get("labelled"),
            "epochs": trained["schedule_epochs"][-1], "steps": record.get("final_step", ""),
            "inception_crop": experiment.get("inception_crop"),
            "top1": f"{100 * top1:.2f}", "top5": f"{100 * top5:.2f}",
            "rot_avg_top1": f"{100 * rot_avg:.2f}" if rot_avg is not None else "",
            "stages_top1": _stages_top1(summary),
            "wall_min": round(summary.get("wall_time_s", 0) / 60, 1),
            "command": summary.get("command", "")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+",
                        help="Output directories of finished runs, or kept summary files.")
    parser.add_argument("--name", default="run_summaries",
                        help="Results file name under benchmarks/results/.")
    parser.add_argument("--notes", default="")
    parser.add_argument("--append", action="store_true",
                        help="Keep the rows already in results/<name>.json; add these runs.")
    args = parser.parse_args(argv)
    try:
        cpu = common.cpu_label(common.machine())
        rows = [dict(row(d), machine=cpu) for d in args.run_dirs]
        notes = args.notes
        if args.append:
            kept, earlier_notes = earlier_rows(args.name, {r["run"] for r in rows})
            rows = kept + rows
            notes = " ".join(n for n in (earlier_notes, notes) if n)
    except (OSError, ValueError) as e:
        print(f"run_summaries: error: {e}", file=sys.stderr)
        return 2
    common.save(args.name, rows, COLUMNS, notes=notes)
    return 0


def earlier_rows(name: str, replaced: set[str]) -> tuple[list[dict], str]:
    """The rows of results/<name>.json not named in REPLACED (each with the CPU that ran it:
    the file's machine where the row predates the column), and the file's notes."""
    path = os.path.join(common.RESULTS_DIR, f"{name}.json")
    if not os.path.exists(path):
        return [], ""
    try:
        with open(path) as f:
            record = json.load(f)
        cpu = common.cpu_label(record["machine"])
        rows = [dict(r, machine=r.get("machine") or cpu) for r in record["rows"]
                if r["run"] not in replaced]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: cannot append to it ({e!r}); not a run_summaries file") from e
    return rows, record.get("notes", "")


if __name__ == "__main__":
    sys.exit(main())
