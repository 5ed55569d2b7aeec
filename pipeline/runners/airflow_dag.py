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

After the components, the task `s4l_summary` writes OUTPUT_DIR/summary.json and report.html
as the local runner does.

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
SUMMARY_TASK = "s4l_summary"


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
    # The pipeline names its code by import path: parsing the file (every scheduler loop)
    # builds no wheels and writes nothing under the pipeline root.
    pipeline = pipeline_lib.create_pipeline(**spec.pipeline_kwargs())
    scope_artifact_names(pipeline)
    config = airflow_dag_runner.AirflowPipelineConfig(airflow_dag_config=dict(dag_config or {}))
    dag = airflow_dag_runner.AirflowDagRunner(config).run(pipeline)
    add_summary_task(dag, spec, argv)
    return dag


def add_summary_task(dag, spec: cli.RunSpec, argv: list[str]) -> None:
    """A last task, after every component: OUTPUT_DIR/summary.json and report.html, as the
    local runner writes them, also printed to the task's log."""
    from airflow.operators.python import PythonOperator

    def write_summary(dag_run=None, **_) -> None:
        from pipeline.runners import local

        start = dag_run.start_date if dag_run is not None else None
        elapsed = ((datetime.datetime.now(datetime.timezone.utc) - start).total_seconds()
                   if start else 0.0)
        local.print_summary(local.write_summary(spec, elapsed, argv), spec, elapsed)

    leaves = list(dag.leaves)
    task = PythonOperator(task_id=SUMMARY_TASK, python_callable=write_summary, dag=dag)
    for leaf in leaves:
        leaf >> task


def scope_artifact_names(pipeline) -> None:
    """Gives every component on TFX's base driver one that puts the component id in its
    output artifacts' names.

    The Airflow runner uses TFX's legacy driver, which names each output artifact
    "<output key>:<run id>", and ML Metadata wants (type, name) unique: two components with
    the same output key and type in one run (the Pusher and the HubPusher; each stage's
    Trainer, Evaluator and Pusher) would fail the second one with AlreadyExistsError.
    """
    from tfx.dsl.components.base import base_driver

    class ComponentScopedNamesDriver(base_driver.BaseDriver):
        def _prepare_output_artifacts(self, input_artifacts, output_dict, exec_properties,
                                      execution_id, pipeline_info, component_info):
            outputs = super()._prepare_output_artifacts(
                input_artifacts, output_dict, exec_properties, execution_id, pipeline_info,
                component_info)
            for artifacts in outputs.values():
                for artifact in artifacts:
                    artifact.name = f"{component_info.component_id}:{artifact.name}"
            return outputs

    for component in pipeline.components:
        if getattr(component, "driver_class", None) is base_driver.BaseDriver:
            component.driver_class = ComponentScopedNamesDriver


# Airflow collects DAG objects from the module's globals.
DAG = build_dag(*settings_from_env())
