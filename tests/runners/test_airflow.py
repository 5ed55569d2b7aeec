"""The Airflow DAG file: Airflow loads it (no database needed) and its tasks are the pipeline's
components with the pipeline's dependencies.

Airflow configures logging and reads its settings when first imported, so the DAG is loaded
in a subprocess with a throw-away AIRFLOW_HOME and SQLite database.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, write_image_folder

DAG_FILE = os.path.join(REPO, "pipeline", "runners", "airflow_dag.py")

# Loads DAG_FILE as the scheduler does and prints what the tests check, as JSON.
_LOAD = """
import datetime, json, sys
from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], include_examples=False, safe_mode=True)
dag = bag.dags.get("s4l")  # Not get_dag(): that consults the database.
from pipeline.runners import airflow_dag

argv, config = airflow_dag.settings_from_env({"AIRFLOW_HOME": "/srv/airflow"})
print(json.dumps({
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "schedule": dag and dag.timetable.summary,
    "max_active_tasks": dag and dag.max_active_tasks,
    "catchup": dag and dag.catchup,
    "upstream": dag and {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
    "defaults": [argv, config["schedule"], config["start_date"].isoformat()],
}))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("airflow")
    images = write_image_folder(str(root / "images"), classes=3, train_per_class=10,
                                test_per_class=2)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'home' / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "S4L_PIPELINE_ARGS": f"--source image_folder --data_path {images} --dataset synthetic "
                             "--labelled_fraction 0.2 --preset supervised,s4l_rotation",
        "S4L_OUTPUT_DIR": str(root / "out"),
        "S4L_SCHEDULE": "@weekly",
    }
    proc = subprocess.run([sys.executable, "-c", _LOAD, DAG_FILE], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, json.loads(proc.stdout.strip().splitlines()[-1])


def test_airflow_loads_the_dag_file(loaded):
    root, info = loaded
    assert info["import_errors"] == {}
    assert info["dags"] == ["s4l"]
    assert info["schedule"] == "0 0 * * 0"  # S4L_SCHEDULE=@weekly
    assert info["max_active_tasks"] == 1 and info["catchup"] is False
    # Parsing used the installed package's import paths: no module wheels were built.
    assert not (root / "out" / "tfx" / "_wheels").exists()


def test_tasks_are_the_components(loaded):
    tasks = set(loaded[1]["upstream"])
    shared = {"S4LExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "S4LDataGate", "Transform"}
    per_stage = {f"{kind}.{stage}" for kind in ("Trainer", "baseline_resolver", "Evaluator",
                                                "Pusher")
                 for stage in ("supervised", "s4l_rotation")}
    assert shared | per_stage <= tasks


def test_dependencies_follow_the_pipeline(loaded):
    upstream = {task: set(ids) for task, ids in loaded[1]["upstream"].items()}
    assert upstream["S4LExampleGen"] == set()
    assert upstream["Transform"] == {"S4LExampleGen", "ImportSchemaGen"}
    for stage in ("supervised", "s4l_rotation"):
        # The schema reaches the Trainers through the data gate (it stops wrong data).
        assert {"Transform", "S4LExampleGen", "S4LDataGate"} <= upstream[f"Trainer.{stage}"]
        assert upstream["S4LDataGate"] == {"StatisticsGen", "ExampleValidator", "ImportSchemaGen"}
        assert {f"Trainer.{stage}", f"baseline_resolver.{stage}"} <= upstream[
            f"Evaluator.{stage}"]
        assert {f"Trainer.{stage}", f"Evaluator.{stage}"} <= upstream[f"Pusher.{stage}"]


def test_settings_from_env_defaults(loaded):
    argv, schedule, start = loaded[1]["defaults"]
    assert argv == ["--output_dir", "/srv/airflow/s4l"]
    assert schedule is None and start.startswith("2026-01-01")
