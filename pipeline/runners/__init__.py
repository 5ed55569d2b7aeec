"""Runners of the one `create_pipeline(...)` besides the local LocalDagRunner (beam_runner.py).

* `vertex_runner`: KubeflowV2DagRunner -> Vertex Pipelines JSON; the Trainer as a Vertex
  custom job on CPU, GPU or TPU machines.
* `dataflow`: LocalDagRunner orchestration with the Beam components on Dataflow.
* `airflow_dag`: an Airflow DAG file (AirflowDagRunner).
* `common`: what they share (command line, remote data paths, Trainer machines).

Local multi-process Beam is `beam_runner.py --beam_workers N`.
"""
