"""The Airflow DAG, run: Airflow's own local test mode (`dag.test()`: SQLite metadata, no
scheduler or executor service) executes every task of a small pipeline in one process.

Airflow configures logging and reads its settings when first imported, so the run happens in
a subprocess with a throw-away AIRFLOW_HOME.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, write_image_folder

pytestmark = pytest.mark.xdist_group("airflow_run")

DAG_FILE = os.path.join(REPO, "pipeline", "runners", "airflow_dag.py")

_RUN = """
import json, sys
from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], include_examples=False, safe_mode=True)
assert not bag.import_errors, bag.import_errors
run = bag.dags["s4l"].test()
print(json.dumps({"state": str(run.state),
                  "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


@pytest.fixture(scope="module")
def airflow_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("airflow_run")
    images = write_image_folder(str(root / "images"), classes=3, train_per_class=8,
                                test_per_class=4)
    home = root / "home"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "S4L_PIPELINE_ARGS": f"--source image_folder --data_path {images} --dataset synthetic "
                             "--labelled_fraction 0.5 --train_epochs 2 --min_top1 0",
        "S4L_OUTPUT_DIR": str(root / "out"),
    }
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-c", _RUN, DAG_FILE], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_task_succeeds(airflow_run):
    _, result = airflow_run
    assert result["state"] == "success", result
    assert set(result["tasks"].values()) == {"success"}, result["tasks"]
    assert {"S4LExampleGen", "Trainer.supervised", "Pusher.supervised",
            "HubPusher.supervised", "s4l_summary"} <= set(result["tasks"])


def test_the_run_wrote_its_summary_and_pushed_the_model(airflow_run):
    root, _ = airflow_run
    with open(root / "out" / "summary.json") as f:
        summary = json.load(f)
    assert summary["blessed"] is True and summary["pushed"] is True
    assert os.path.isfile(os.path.join(summary["pushed_to"], "saved_model.pb"))
    assert os.path.isdir(os.path.join(summary["hub_module_dir"], "classification"))
    assert summary["data_anomalies"] == []
    assert os.path.isfile(summary["report"])
