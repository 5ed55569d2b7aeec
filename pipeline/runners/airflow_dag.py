"""Airflow DAG file of the S4L pipeline (TFX AirflowDagRunner; each component is one task).

Put this file (or a link to it) in the Airflow dags folder of a machine that has this package
installed (`pip install -c constraints.txt '.[airflow]'`). Settings are read from environment
variables when Airflow parses the file:

  S4L_PIPELINE_ARGS  beam_runner.py flags, e.g. "--preset supervised --labelled_fraction 0.1
                     --data_path /data/fashion-mnist" (default: the README's main job)
  S4L_OUTPUT_DIR     default --output_dir (default $AIRFLOW_HOME/s4l); artifacts and the SQLite
                     ML Metadata go to OUTPUT_DIR/tfx
  S4L_SCHEDULE       cron expression or preset such as @weekly (default: none, trigger by hand)
  S4L_START_DATE     ISO date of the first schedule (default 2026-01-01)

Parsing imports TensorFlow and TFX (tens of seconds on a small machine) and lists the data
files for ExampleGen's cache fingerprint: raise Airflow's core.dagbag_import_timeout above
that. Tasks share one SQLite ML Metadata file: run them one at
a time (max_active_tasks 1 is set) or point the metadata at MySQL.
"""

from __future__ import annotations

import datetime
import os
import shlex
from typing import Any

from pipeline import cli

DEFAULT_START_DATE = "2026-01-01"


def settings_from_env(environ: dict[str, str] | None = None
                      ) -> tuple[list[str], dict[str, Any]]:
    """(beam_runner argv, Airflow DAG arguments) from the S4L_* environment variables."""
    environ = dict(os.environ if environ is None else environ)
    airflow_home = environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    output_dir = environ.get("S4L_OUTPUT_DIR") or os.path.join(airflow_home, "s4l")
    # Later flags win: S4L_PIPELINE_ARGS may set --output_dir itself.
    argv = ["--output_dir", output_dir, *shlex.split(environ.get("S4L_PIPELINE_ARGS", ""))]
    dag_config = {
        "schedule": environ.get("S4L_SCHEDULE") or None,
        "start_date": datetime.datetime.fromisoformat(
            environ.get("S4L_START_DATE", DEFAULT_START_DATE)).replace(
                tzinfo=datetime.timezone.utc),
        "catchup": False,
        "max_active_runs": 1,
        "max_active_tasks": 1,
        "tags": ["s4l", "tfx"],
    }
    return argv, dag_config


def build_dag(argv: list[str], dag_config: dict[str, Any] | None = None):
    """The Airflow DAG of the pipeline that `beam_runner.py ARGV` would run.

    Raises:
      ValueError: bad flags, presets or paths (Airflow shows it as the file's import error).
    """
    from tfx.orchestration.airflow import airflow_dag_runner

    from pipeline import pipeline as pipeline_lib

    spec = cli.local_run_spec(cli.build_parser().parse_args(argv))
    # Import paths into the installed package: parsing the file (every scheduler loop) then
    # builds no wheels and writes nothing under the pipeline root.
    pipeline = pipeline_lib.create_pipeline(**spec.pipeline_kwargs(), installed_modules=True)
    config = airflow_dag_runner.AirflowPipelineConfig(airflow_dag_config=dict(dag_config or {}))
    return airflow_dag_runner.AirflowDagRunner(config).run(pipeline)


# Airflow collects DAG objects from the module's globals.
DAG = build_dag(*settings_from_env())
