"""Tabulates finished pipeline runs: one row per `summary.json`, for ablations.

The label-efficiency table only holds presets as they are. Runs with overrides
(`beam_runner.py ... --set inception_crop=false --train_epochs 96`) are compared here:

  .venv/bin/python benchmarks/run_summaries.py --name ablation_crop_budget \
      runs/exp_nocrop runs/exp_rotation_nocrop

Each row: the run's final TFMA top-1/top-5, rotation-averaged top-1 where recorded, labelled
epochs, crop setting, wall time, the CPU that ran it (name and widest ISA) and the command
that produced it. Written to results/<name>.json and .md. Run directories live on the machine
that trained them, so `--append` grows a table over sittings: it keeps the rows already in
results/<name>.json (a run of the same name is replaced) and adds the new ones.
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
           "rot_avg_top1", "wall_min", "machine", "command"]


def row(run_dir: str) -> dict:
    """One table row from RUN_DIR/summary.json (and the Trainer's experiment.json)."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no summary.json (did the run finish?)")
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
    return {"run": os.path.basename(os.path.normpath(run_dir)), "model": summary.get("model"),
            "labelled": summary.get("splits", {}).get("labelled"),
            "epochs": trained["schedule_epochs"][-1], "steps": record.get("final_step", ""),
            "inception_crop": experiment.get("inception_crop"),
            "top1": f"{100 * top1:.2f}", "top5": f"{100 * top5:.2f}",
            "rot_avg_top1": f"{100 * rot_avg:.2f}" if rot_avg is not None else "",
            "wall_min": round(summary.get("wall_time_s", 0) / 60, 1),
            "command": summary.get("command", "")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="Output directories of finished runs.")
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
