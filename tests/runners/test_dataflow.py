"""Dataflow: the Beam options parse as Dataflow options, bad settings fail with clear errors,
and create_pipeline carries them to every Beam component (no cloud access)."""

import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)

from pipeline.runners import common, dataflow

IMAGE = "us-docker.pkg.dev/p/s4l/pipeline:rev1"
SETTINGS = {"project": "p", "region": "europe-west4", "temp_location": "gs://b/tmp/",
            "image": IMAGE}


def test_options_parse_as_dataflow_options():
    args = dataflow.dataflow_beam_args(**SETTINGS, machine_type="n2-highmem-8",
                                       max_num_workers=25, disk_size_gb=100,
                                       service_account="w@p.iam.gserviceaccount.com")
    options = PipelineOptions(args)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region) == ("p", "europe-west4")
    assert cloud.temp_location == "gs://b/tmp"
    assert cloud.staging_location == "gs://b/tmp/staging"
    assert cloud.service_account_email == "w@p.iam.gserviceaccount.com"
    worker = options.view_as(WorkerOptions)
    assert worker.sdk_container_image == IMAGE
    assert (worker.machine_type, worker.max_num_workers, worker.disk_size_gb) == (
        "n2-highmem-8", 25, 100)
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    # Every argument is a known Beam option (unknown ones would be dropped silently).
    assert options.get_all_options(drop_default=True, retain_unknown_options=True) == (
        options.get_all_options(drop_default=True))


@pytest.mark.parametrize("change,message", [
    ({"project": ""}, "needs --project"),
    ({"region": ""}, "needs --region"),
    ({"region": "europe"}, "needs --region"),
    ({"temp_location": "/tmp/beam"}, "--temp_location must be a gs://"),
    ({"temp_location": "gs://"}, "--temp_location must be a gs://"),
    ({"staging_location": "s3://b/staging"}, "--staging_location must be a gs://"),
    ({"image": ""}, "pass --image"),
    ({"max_num_workers": 0}, "must be >= 1"),
])
def test_bad_settings(change, message):
    with pytest.raises(common.RunnerError, match=message):
        dataflow.dataflow_beam_args(**{**SETTINGS, **change})


@pytest.fixture
def argv(image_folder, tmp_path):
    return ["--source", "image_folder", "--data_path", image_folder, "--dataset", "synthetic",
            "--output_dir", str(tmp_path / "out"), "--pipeline_root", "gs://b/s4l",
            "--project", "p", "--region", "us-central1", "--temp_location", "gs://b/tmp",
            "--image", IMAGE, "--max_num_workers", "4"]


def test_create_pipeline_carries_the_options(argv):
    args = dataflow.build_parser().parse_args(argv)
    pipeline = dataflow.create_dataflow_pipeline(args, ["--number_of_worker_harness_threads=4"])
    beam_args = pipeline.beam_pipeline_args
    assert beam_args[-1] == "--number_of_worker_harness_threads=4"
    assert not any(a.startswith("--direct_") for a in beam_args)
    cloud = PipelineOptions(beam_args).view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.temp_location) == ("p", "us-central1",
                                                                  "gs://b/tmp")
    assert PipelineOptions(beam_args).view_as(WorkerOptions).max_num_workers == 4
    assert pipeline.pipeline_info.pipeline_root == "gs://b/s4l"
    # The Pipeline hands its Beam arguments to every Beam-powered component.
    on_dataflow = {c.id for c in pipeline.components
                   if "--runner=DataflowRunner" in getattr(c.executor_spec,
                                                           "beam_pipeline_args", [])}
    assert {"StatisticsGen", "Transform", "Evaluator.supervised"} <= on_dataflow
    # S4LExampleGen converts local files: its own arguments put it on the DirectRunner.
    (example_gen,) = (c for c in pipeline.components if c.id == "S4LExampleGen")
    options = PipelineOptions(example_gen.executor_spec.beam_pipeline_args)
    assert options.view_as(StandardOptions).runner == "DirectRunner"


@pytest.mark.parametrize("change,message", [
    ({"--pipeline_root": "/tmp/root"}, "--pipeline_root must be a gs://"),
    ({"--temp_location": ""}, "--temp_location is required"),
    ({"--data_path": "gs://b/images"}, "must be a local directory"),
])
def test_cli_refuses_bad_settings(argv, capsys, change, message):
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = value
    assert dataflow.main(argv) == 2
    assert message in capsys.readouterr().err
