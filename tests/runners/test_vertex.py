"""Vertex Pipelines: the compiled pipeline JSON and the Trainer's custom-job specs, with no
cloud access (any gs:// file operation fails the test)."""

import json

import pytest
from tfx.dsl.io import fileio
from tfx.v1.extensions import google_cloud_ai_platform as gcai

from modules.trainer.experiment import Experiment
from pipeline import pipeline as pipeline_lib
from pipeline.runners import common, vertex_runner

IMAGE = "us-docker.pkg.dev/p/s4l/pipeline:rev1"
TPU_IMAGE = "us-docker.pkg.dev/p/s4l/trainer-tpu:rev1"
BASE_ARGV = ["--project", "p", "--region", "us-central1", "--image", IMAGE,
             "--pipeline_root", "gs://b/s4l", "--data_path", "gs://b/fashion-mnist"]


def _no_cloud(name, function):
    def guarded(path, *args, **kwargs):
        assert not str(path).startswith("gs://"), f"fileio.{name}({path!r}) during compile"
        return function(path, *args, **kwargs)
    return guarded


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """`vertex_runner.main` for a TPU Trainer; returns (pipeline spec, tasks' parameters)."""
    output = tmp_path_factory.mktemp("vertex") / "pipeline.json"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("exists", "makedirs", "mkdir", "open", "copy", "glob", "isdir",
                     "listdir", "remove", "rmtree", "stat"):
            patch.setattr(fileio, name, _no_cloud(name, getattr(fileio, name)))
        code = vertex_runner.main([*BASE_ARGV, "--trainer_machine", "tpu",
                                   "--trainer_image", TPU_IMAGE, "--output", str(output)])
    assert code == 0
    spec = json.loads(output.read_text())["pipelineSpec"]
    params = {name: {key: value["runtimeValue"]["constantValue"]
                     for key, value in task.get("inputs", {}).get("parameters", {}).items()
                     if "runtimeValue" in value}
              for name, task in spec["root"]["dag"]["tasks"].items()}
    return spec, params


def _string(params, task, key):
    return params[task][key]["stringValue"]


def test_every_component_runs_in_the_pipeline_image(compiled):
    spec, _ = compiled
    tasks = set(spec["root"]["dag"]["tasks"])
    for component in ("S4LExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                      "S4LDataGate", "Transform", "Trainer.supervised", "Evaluator.supervised",
                      "Pusher.supervised"):
        assert component in tasks
    # No baseline resolver: Vertex's would match any blessed model of the project.
    assert not [task for task in tasks if "resolver" in task]
    assert "baseline_model" not in spec["root"]["dag"]["tasks"]["Evaluator.supervised"].get(
        "inputs", {}).get("artifacts", {})
    containers = {name: executor["container"]
                  for name, executor in spec["deploymentSpec"]["executors"].items()
                  if "container" in executor}
    assert {c["image"] for c in containers.values()} == {IMAGE}
    trainer_args = containers["Trainer.supervised_executor"]["args"]
    assert trainer_args[:2] == ["--executor_class_path",
                                "tfx.extensions.google_cloud_ai_platform.trainer.executor"
                                ".GenericExecutor"]
    # Without --dataflow the Beam work runs in the container on the DirectRunner's in-process
    # default: no runner arguments (which would also make TFX package itself for workers).
    transform_args = containers["Transform_executor"]["args"]
    assert not any(a.startswith(("--runner", "--direct_", "--extra_package"))
                   for a in trainer_args + transform_args)


def test_paths_and_user_code_are_what_the_containers_see(compiled):
    _, params = compiled
    assert _string(params, "S4LExampleGen", "data_path") == "/gcs/b/fashion-mnist"
    assert _string(params, "ImportSchemaGen", "schema_file") == common.IMAGE_SCHEMA_PATH
    assert _string(params, "Transform", "preprocessing_fn") == pipeline_lib.PREPROCESSING_FN
    assert _string(params, "Trainer.supervised", "run_fn") == pipeline_lib.RUN_FN
    assert "module_file" not in params["Transform"]
    assert "module_file" not in params["Trainer.supervised"]
    assert "gs://b/s4l/serving_model/supervised" in _string(
        params, "Pusher.supervised", "push_destination")


def test_tpu_trainer_job_spec(compiled):
    _, params = compiled
    config = json.loads(_string(params, "Trainer.supervised", "custom_config"))
    assert config[gcai.ENABLE_VERTEX_KEY] is True
    assert config[gcai.VERTEX_REGION_KEY] == "us-central1"
    training = config[gcai.TRAINING_ARGS_KEY]
    assert training["project"] == "p"
    assert training["job_spec"]["worker_pool_specs"] == [{
        "machine_spec": {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3",
                         "accelerator_count": 8},
        "replica_count": 1,
        "container_spec": {"image_uri": TPU_IMAGE},
    }]
    experiment = Experiment.from_dict(config["experiment"])
    assert (experiment.strategy, experiment.tpu_address) == ("tpu", "local")
    assert experiment.batch_size % 8 == 0


def test_gpu_job_specs():
    one = vertex_runner.make_machine("gpu")
    assert vertex_runner.job_spec(one, IMAGE)["worker_pool_specs"][0] == {
        "machine_spec": {"machine_type": "a2-highgpu-1g",
                         "accelerator_type": "NVIDIA_TESLA_A100", "accelerator_count": 1},
        "replica_count": 1,
        "container_spec": {"image_uri": IMAGE,
                           "env": [{"name": "TF_ENABLE_ONEDNN_OPTS", "value": "0"}]},
    }
    assert (one.strategy, one.replicas) == ("default", 1)
    four = vertex_runner.make_machine("gpu", accelerator_count=4)
    assert four.machine_spec() == {"machine_type": "a2-highgpu-4g",
                                   "accelerator_type": "NVIDIA_TESLA_A100",
                                   "accelerator_count": 4}
    [placed] = vertex_runner.apply_machine([Experiment(batch_size=64)], four)
    assert (placed.strategy, placed.tpu_address) == ("mirrored", "")


def test_tpu_vm_and_cpu_machines():
    v5e = vertex_runner.make_machine("tpu", "ct5lp-hightpu-4t", tpu_topology="2x2")
    assert v5e.machine_spec() == {"machine_type": "ct5lp-hightpu-4t", "tpu_topology": "2x2"}
    assert (v5e.strategy, v5e.replicas) == ("tpu", 4)
    [placed] = vertex_runner.apply_machine([Experiment()], v5e, tpu_address="")
    assert (placed.strategy, placed.tpu_address) == ("tpu", "local")
    cpu = vertex_runner.make_machine("cpu")
    assert vertex_runner.job_spec(cpu, IMAGE, service_account="sa@p.iam")["service_account"] \
        == "sa@p.iam"
    assert cpu.machine_spec() == {"machine_type": "n1-standard-16"}
    assert cpu.strategy == "default"


def test_trainer_factory_refuses_a_stage_that_does_not_fit_the_machine():
    factory = vertex_runner.vertex_trainer_factory(
        "p", "us-central1", vertex_runner.make_machine("tpu"), TPU_IMAGE, "s4l")
    with pytest.raises(common.RunnerError, match="strategy 'default'"):
        factory(Experiment(), custom_config={})


def test_multi_stage_pipeline_gives_every_trainer_a_job(tmp_path):
    output = tmp_path / "p.json"
    assert vertex_runner.main([*BASE_ARGV, "--preset", "pseudo_labels", "--trainer_machine",
                               "gpu", "--output", str(output)]) == 0
    tasks = json.loads(output.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "BulkInferrer.pseudo_labels" in tasks
    for stage in ("supervised", "pseudo_labels"):
        config = json.loads(tasks[f"Trainer.{stage}"]["inputs"]["parameters"]["custom_config"]
                            ["runtimeValue"]["constantValue"]["stringValue"])
        pool = config[gcai.TRAINING_ARGS_KEY]["job_spec"]["worker_pool_specs"][0]
        assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_A100"
        assert pool["container_spec"]["image_uri"] == IMAGE
        assert config[gcai.TRAINING_ARGS_KEY]["display_name"] == f"s4l-{stage}"


def test_dataflow_option_sends_the_beam_work_to_dataflow(tmp_path):
    output = tmp_path / "p.json"
    assert vertex_runner.main([*BASE_ARGV, "--dataflow", "--output", str(output), "--",
                               "--number_of_worker_harness_threads=2"]) == 0
    executors = json.loads(output.read_text())["pipelineSpec"]["deploymentSpec"]["executors"]
    args = executors["Transform_executor"]["container"]["args"]
    assert {"--runner=DataflowRunner", "--region=us-central1", f"--sdk_container_image={IMAGE}",
            "--temp_location=gs://b/s4l/beam/tmp"} <= set(args)
    assert args[-1] == "--number_of_worker_harness_threads=2"
    assert not any(a.startswith("--direct_") for a in args)


def test_strategy_tpu_flag_means_the_jobs_own_tpu(tmp_path):
    output = tmp_path / "p.json"
    assert vertex_runner.main([*BASE_ARGV, "--trainer_machine", "tpu", "--trainer_image",
                               TPU_IMAGE, "--strategy", "tpu", "--machine_type",
                               "ct5lp-hightpu-4t", "--output", str(output)]) == 0
    task = json.loads(output.read_text())["pipelineSpec"]["root"]["dag"]["tasks"][
        "Trainer.supervised"]
    config = json.loads(task["inputs"]["parameters"]["custom_config"]["runtimeValue"]
                        ["constantValue"]["stringValue"])
    assert config["experiment"]["tpu_address"] == "local"
    pool = config[gcai.TRAINING_ARGS_KEY]["job_spec"]["worker_pool_specs"][0]
    assert pool["machine_spec"] == {"machine_type": "ct5lp-hightpu-4t"}
    assert {e["name"]: e["value"] for e in pool["container_spec"]["env"]} == (
        vertex_runner.TPU_VM_PJRT_ENV)


def test_several_trainer_machines_train_multi_worker(tmp_path):
    output = tmp_path / "p.json"
    assert vertex_runner.main([*BASE_ARGV, "--trainer_machine", "gpu", "--accelerator_count",
                               "2", "--trainer_replicas", "3", "--batch_size", "60",
                               "--output", str(output)]) == 0
    task = json.loads(output.read_text())["pipelineSpec"]["root"]["dag"]["tasks"][
        "Trainer.supervised"]
    config = json.loads(task["inputs"]["parameters"]["custom_config"]["runtimeValue"]
                        ["constantValue"]["stringValue"])
    assert Experiment.from_dict(config["experiment"]).strategy == "multi_worker"
    chief, workers = config[gcai.TRAINING_ARGS_KEY]["job_spec"]["worker_pool_specs"]
    assert (chief["replica_count"], workers["replica_count"]) == (1, 2)
    assert chief["machine_spec"] == workers["machine_spec"] == {
        "machine_type": "a2-highgpu-2g", "accelerator_type": "NVIDIA_TESLA_A100",
        "accelerator_count": 2}
    assert chief["container_spec"] == workers["container_spec"]
    assert vertex_runner.make_machine("gpu", accelerator_count=2, hosts=3).replicas == 6


@pytest.mark.parametrize("change,message", [
    ({"--project": ""}, "--project is required"),
    ({"--pipeline_root": "/tmp/root"}, "--pipeline_root must be a gs://"),
    ({"--data_path": "/usr/share/datasets/fashion-mnist"}, "--data_path must be a gs://"),
    ({"--trainer_machine": "tpu"}, "needs --trainer_image"),
    ({"--trainer_machine": "tpu", "--trainer_image": TPU_IMAGE, "--strategy": "mirrored"},
     "--strategy mirrored does not fit"),
    ({"--trainer_machine": "tpu", "--trainer_image": TPU_IMAGE, "--batch_size": "12"},
     "batch_size=12 does not divide across 8 replicas"),
    ({"--trainer_machine": "tpu", "--trainer_image": TPU_IMAGE, "--accelerator_count": "4"},
     "TPU_V2 or TPU_V3 with count 8"),
    ({"--accelerator_type": "TPU_V3"}, "NVIDIA_"),
    ({"--trainer_replicas": "3", "--batch_size": "16"},
     "batch_size=16 does not divide across 3 replicas"),
    ({"--strategy": "multi_worker"}, "add --trainer_replicas N"),
    ({"--trainer_machine": "tpu", "--trainer_image": TPU_IMAGE, "--trainer_replicas": "2"},
     "--trainer_replicas > 1 is for CPU and GPU"),
    ({"--source": "image_folder"}, "--num_classes is required"),
])
def test_bad_settings_fail_before_compiling(tmp_path, capsys, change, message):
    argv = list(BASE_ARGV)
    for flag, value in change.items():
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    output = tmp_path / "p.json"
    assert vertex_runner.main([*argv, "--output", str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_already_split_examples_on_cloud_storage_are_imported(tmp_path):
    """`--source examples`: an Importer of the gs:// directory itself replaces S4LExampleGen,
    and the Transform and Trainer read the Importer's artifact."""
    output = tmp_path / "pipeline.json"
    argv = [*BASE_ARGV[:-1], "gs://b/imagenet-splits", "--source", "examples",
            "--dataset", "imagenet", "--labels", "1pct", "--num_classes", "1000",
            "--output", str(output)]
    with pytest.MonkeyPatch.context() as patch:
        for name in ("exists", "glob", "open", "stat", "listdir"):
            patch.setattr(fileio, name, _no_cloud(name, getattr(fileio, name)))
        assert vertex_runner.main(argv) == 0
    tasks = json.loads(output.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "S4LExampleGen" not in tasks
    importer = tasks["ImportExamples"]
    assert importer["inputs"]["parameters"]["artifact_uri"]["runtimeValue"][
        "constantValue"]["stringValue"] == "gs://b/imagenet-splits"
    for consumer in ("Transform", "Trainer.supervised", "Evaluator.supervised"):
        assert tasks[consumer]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"][
            "producerTask"] == "ImportExamples"
    # Without the class count the remote data cannot be described: a clear error.
    assert vertex_runner.main([*argv[:argv.index("--num_classes")],
                               "--output", str(output)]) == 2
