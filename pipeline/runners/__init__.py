"""Runners of the one `create_pipeline(...)`, each building it from a `cli.RunSpec`.

* `local`: LocalDagRunner with SQLite ML Metadata and in-process Beam (`beam_runner.py`);
  `--beam_workers N` runs Beam in N local processes.
* `vertex_runner`: KubeflowV2DagRunner -> Vertex Pipelines JSON; the Trainer as a Vertex
  custom job on CPU, GPU or TPU machines.
* `dataflow`: LocalDagRunner orchestration with the Beam components on Dataflow.
* `airflow_dag`: an Airflow DAG file (AirflowDagRunner).
* `common`: what the remote runners share (remote data paths, the pipeline image).
"""
