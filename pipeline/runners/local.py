"""The local runner: LocalDagRunner, SQLite ML Metadata, in-process Beam (`beam_runner.py`).

After the run it writes OUTPUT_DIR/summary.json (every stage's metrics, blessing and pushed
model) and OUTPUT_DIR/report.html, and prints the summary.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import Any

from pipeline import cli, tf_env

PROG = "beam_runner"
_PROGRESS_PATTERNS = ("Component ", "S4LExampleGen:", "Training ", "Final eval",
                      "Running pipeline", "not blessed", "Model pushed", "Rejected record",
                      "Initialised ", "Resuming from the backup", "No backup of these",
                      "The training data resumes")


# Library warnings that say nothing about this run: TFX's resolver and Examples-format
# notices, TF deprecation notices from TFMA and tfx-bsl, Keras' note on loading a plain
# SavedModel (the serving model is one by design), and a missing optional speed-up.
_LIBRARY_NOISE = ("ArtifactQuery.property_predicate is not supported",
                  "does not have payload_format custom property",
                  "is deprecated and will be removed in a future version",
                  "SavedModel saved prior to TF 2.5 detected",
                  "Couldn't find python-snappy")


class _ProgressFilter:
    """Keeps the progress lines of a run (components starting and finishing, conversion
    counts, training) and every warning but the libraries' routine ones; drops TFX's
    multi-page INFO dumps of protos."""

    def filter(self, record) -> bool:
        message = record.getMessage()
        if record.levelno >= 30:
            return record.levelno >= 40 or not any(n in message for n in _LIBRARY_NOISE)
        return "\n" not in message and any(p in message for p in _PROGRESS_PATTERNS)


def _set_up_logging(verbose: bool) -> None:
    import logging as std_logging

    from absl import logging

    std_logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                            force=True)
    logging.set_verbosity(logging.INFO)
    if not verbose:
        # On the handler, so that it sees the records of every logger (absl, TensorFlow's).
        for handler in std_logging.getLogger().handlers:
            handler.addFilter(_ProgressFilter())


def write_summary(spec: cli.RunSpec, elapsed: float, argv: list[str],
                  stopped: str = "") -> dict[str, Any]:
    """OUTPUT_DIR/summary.json: the last stage's results at the top level, every stage's
    under "stages" when there are several; `stopped`: why the run stopped early."""
    from pipeline.reporting import run_summary

    paths, names = spec.paths, [e.name for e in spec.experiments]
    stages = {name: run_summary.summarize(paths.metadata_path, spec.pipeline_name, name,
                                          spec.data.num_classes)
              for name in names}
    summary = dict(stages[names[-1]])
    summary.update(wall_time_s=round(elapsed, 1), pipeline_root=paths.pipeline_root,
                   metadata=paths.metadata_path, experiment=spec.experiments[-1].to_dict(),
                   command=shlex.join(["beam_runner.py", *argv]))
    if len(names) > 1:
        summary["stages"] = stages
    if stopped:
        summary["stopped"] = stopped
    summary["report"] = paths.report_path
    os.makedirs(paths.output_dir, exist_ok=True)
    with open(paths.summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def print_summary(summary: dict[str, Any], spec: cli.RunSpec, elapsed: float) -> None:
    """The summary of every stage, then where the files are; writes the report."""
    from absl import logging

    from pipeline.reporting import report, run_summary

    for name, stage in summary.get("stages", {}).items():
        if name != spec.experiments[-1].name:
            print(run_summary.format_summary(stage))
    print(run_summary.format_summary(summary))
    print(f"  wall time:     {elapsed / 60:.1f} min")
    print(f"  summary:       {spec.paths.summary_path}")
    try:
        print(f"  report:        {report.render_report(summary, summary['report'])}")
    except Exception as e:  # noqa: BLE001 - the run succeeded; a report failure must not hide it.
        logging.warning("Could not write the report %s: %s", summary["report"], e)


def main(argv: list[str] | None = None) -> int:
    """Runs the pipeline of `argv` (default sys.argv[1:]); 2 on bad settings, 1 when data
    anomalies stopped it, else 0."""
    argv = sys.argv[1:] if argv is None else argv
    own_args, beam_args = cli.split_beam_args(argv)
    args = cli.build_parser().parse_args(own_args)
    tf_env.quiet_tensorflow_import()
    sys.stdout.reconfigure(line_buffering=True)  # Keras progress lines appear as they happen.
    try:  # Bad flags, presets, paths: say so before any work starts (and before TensorFlow).
        spec = cli.local_run_spec(args, beam_args)
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    _set_up_logging(args.verbose)
    from absl import logging
    from tfx import v1 as tfx

    from pipeline import pipeline as pipeline_lib

    try:
        pipeline = pipeline_lib.create_pipeline(**spec.pipeline_kwargs())
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(spec.paths.pipeline_root, exist_ok=True)
    logging.info("Running pipeline %s (stages %s) under %s", spec.pipeline_name,
                 ", ".join(e.name for e in spec.experiments), spec.paths.pipeline_root)
    from pipeline.components import data_gate

    start = time.time()
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except data_gate.DataAnomaliesError as e:
        elapsed = time.time() - start
        summary = write_summary(spec, elapsed, argv, stopped=str(e))
        print(f"{PROG}: stopped before training: {e}\n  summary: {spec.paths.summary_path}",
              file=sys.stderr)
        print_summary(summary, spec, elapsed)
        return 1
    elapsed = time.time() - start
    print_summary(write_summary(spec, elapsed, argv), spec, elapsed)
    return 0
