"""Compiles the S4L pipeline for Vertex AI Pipelines (KubeflowV2DagRunner) and optionally
submits it.

Every component runs in the pipeline image (docker/Dockerfile); each stage's Trainer runs as a
Vertex custom job on a CPU, GPU or TPU machine (tfx.extensions.google_cloud_ai_platform.Trainer)
in the trainer image (docker/Dockerfile.tpu for TPUs). Data and outputs live in Cloud Storage;
the components read --data_path through Vertex's Cloud Storage FUSE mount (/gcs/...).

Example:
  python -m pipeline.runners.vertex_runner --project P --region us-central1 \\
      --image us-docker.pkg.dev/P/s4l/pipeline:REV --pipeline_root gs://B/s4l \\
      --data_path gs://B/fashion-mnist --push_destination gs://B/serving \\
      --trainer_machine tpu --trainer_image us-docker.pkg.dev/P/s4l/trainer-tpu:REV \\
      --output s4l_vertex.json [--submit]

Compiling needs no cloud access; --submit needs credentials (google-cloud-aiplatform).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline import cli, layout
from pipeline.runners import common

if TYPE_CHECKING:
    from modules.trainer.experiment import Experiment

MACHINE_KINDS = ("cpu", "gpu", "tpu")
# Single-host TPU VM machine types (v5e, v5p): chips per host in the name, no accelerator field.
_TPU_VM_MACHINE = re.compile(r"ct\d+\w*-hightpu-(\d+)t")
_LEGACY_TPU_TYPES = ("TPU_V2", "TPU_V3")


@dataclasses.dataclass(frozen=True)
class TrainerMachine:
    """The Vertex custom-job machines of the Trainer (`hosts` alike) and the strategy that
    uses all of them."""

    kind: str
    machine_type: str
    accelerator_type: str = ""
    accelerator_count: int = 0
    tpu_topology: str = ""
    hosts: int = 1

    @property
    def replicas(self) -> int:
        """Replicas of the distribution strategy over all the job's machines."""
        return self.host_replicas * self.hosts

    @property
    def host_replicas(self) -> int:
        """Replicas on one machine."""
        if self.kind == "gpu":
            return self.accelerator_count
        if self.kind == "tpu":
            if self.accelerator_count:  # cloud-tpu with TPU_V2/V3 x 8: 8 TensorCores.
                return self.accelerator_count
            return int(_TPU_VM_MACHINE.fullmatch(self.machine_type).group(1))
        return 1

    @property
    def strategy(self) -> str:
        if self.kind == "tpu":
            return "tpu"
        if self.hosts > 1:
            return "multi_worker"
        return "mirrored" if self.replicas > 1 else "default"

    def machine_spec(self) -> dict[str, Any]:
        """The CustomJob `machine_spec`."""
        spec: dict[str, Any] = {"machine_type": self.machine_type}
        if self.accelerator_type:
            spec.update(accelerator_type=self.accelerator_type,
                        accelerator_count=self.accelerator_count)
        if self.tpu_topology:
            spec["tpu_topology"] = self.tpu_topology
        return spec


# TensorFlow's PJRT TPU runtime, which TPU VM machine types (v5e, v5p) need; libtpu.so is
# where docker/Dockerfile.tpu puts it.
TPU_VM_PJRT_ENV = {"NEXT_PLUGGABLE_DEVICE_USE_C_API": "true",
                   "TF_PLUGGABLE_DEVICE_LIBRARY_PATH": "/lib/libtpu.so"}

DEFAULT_MACHINES = {
    "cpu": TrainerMachine("cpu", "n1-standard-16"),
    "gpu": TrainerMachine("gpu", "a2-highgpu-1g", "NVIDIA_TESLA_A100", 1),
    "tpu": TrainerMachine("tpu", "cloud-tpu", "TPU_V3", 8),
}


def make_machine(kind: str, machine_type: str = "", accelerator_type: str = "",
                 accelerator_count: int = 0, tpu_topology: str = "", hosts: int = 1
                 ) -> TrainerMachine:
    """The default machine of `kind` with the given fields replaced, `hosts` of them;
    checks the combination.

    A GPU count without a machine type picks the matching a2-highgpu-<N>g; a TPU VM machine
    type (ct5lp-hightpu-4t, ...) carries its accelerator and takes none.
    """
    if kind not in MACHINE_KINDS:
        raise common.RunnerError(f"--trainer_machine must be one of {MACHINE_KINDS}, "
                                 f"got {kind!r}")
    if hosts < 1:
        raise common.RunnerError(f"--trainer_replicas must be >= 1, got {hosts}")
    if kind == "tpu" and hosts > 1:
        raise common.RunnerError("a TPU Trainer trains on one TPU machine (strategy tpu); "
                                 "--trainer_replicas > 1 is for CPU and GPU machines")
    return dataclasses.replace(
        _one_machine(kind, machine_type, accelerator_type, accelerator_count, tpu_topology),
        hosts=hosts)


def _one_machine(kind: str, machine_type: str, accelerator_type: str, accelerator_count: int,
                 tpu_topology: str) -> TrainerMachine:
    default = DEFAULT_MACHINES[kind]
    if kind == "gpu":
        count = accelerator_count or default.accelerator_count
        machine = TrainerMachine(
            "gpu", machine_type or f"a2-highgpu-{count}g",
            accelerator_type or default.accelerator_type, count)
        if not machine.accelerator_type.startswith("NVIDIA_"):
            raise common.RunnerError(f"a GPU Trainer needs an NVIDIA_* accelerator type, got "
                                     f"{machine.accelerator_type!r}")
        return machine
    if kind == "tpu":
        machine_type = machine_type or default.machine_type
        if _TPU_VM_MACHINE.fullmatch(machine_type):
            if accelerator_type or accelerator_count:
                raise common.RunnerError(f"{machine_type} carries its TPU chips; leave out "
                                         "--accelerator_type and --accelerator_count")
            return TrainerMachine("tpu", machine_type, tpu_topology=tpu_topology)
        if machine_type != "cloud-tpu":
            raise common.RunnerError(
                f"a TPU Trainer runs on machine type cloud-tpu (TPU_V2/TPU_V3 x 8) or a TPU VM "
                f"type such as ct5lp-hightpu-4t, got {machine_type!r}")
        machine = TrainerMachine("tpu", machine_type, accelerator_type or default.accelerator_type,
                                 accelerator_count or default.accelerator_count, tpu_topology)
        if machine.accelerator_type not in _LEGACY_TPU_TYPES or machine.accelerator_count != 8:
            raise common.RunnerError(
                f"cloud-tpu takes accelerator TPU_V2 or TPU_V3 with count 8, got "
                f"{machine.accelerator_type} x {machine.accelerator_count}")
        return machine
    if accelerator_type or accelerator_count:
        raise common.RunnerError("a CPU Trainer takes no accelerator; use --trainer_machine gpu")
    return TrainerMachine("cpu", machine_type or default.machine_type)


def apply_machine(experiments: list[Experiment], machine: TrainerMachine,
                  requested_strategy: str | None = None, tpu_address: str = ""
                  ) -> list[Experiment]:
    """Sets each stage's strategy (and TPU address) to what `machine` needs and checks that
    the batches divide across its replicas.

    TPU jobs train with strategy 'tpu' on the TPU VM the job runs on (tpu_address 'local');
    several GPUs with 'mirrored'; several machines with 'multi_worker'.
    """
    from modules.trainer import training

    strategy = machine.strategy
    if requested_strategy == "multi_worker" and machine.hosts == 1:
        raise common.RunnerError("--strategy multi_worker trains on several machines: add "
                                 "--trainer_replicas N (N > 1)")
    if requested_strategy and requested_strategy != strategy:
        if machine.kind == "tpu" or requested_strategy == "tpu" or machine.replicas > 1:
            raise common.RunnerError(
                f"--strategy {requested_strategy} does not fit --trainer_machine "
                f"{machine.kind} ({machine.machine_type}), which trains with strategy "
                f"{strategy!r}; leave --strategy out")
        strategy = requested_strategy  # 'mirrored' over one device is allowed.
    address = (tpu_address or "local") if strategy == "tpu" else ""
    placed = []
    for experiment in experiments:
        experiment = experiment.replace(strategy=strategy, tpu_address=address).validate()
        training.check_replicas(experiment, machine.replicas)
        placed.append(experiment)
    return placed


def job_spec(machine: TrainerMachine, image: str, *, service_account: str = "",
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """The Vertex CustomJob `job_spec` of one Trainer (TFX sets the container command)."""
    env = dict(env or {})
    if machine.kind == "gpu":
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # The GPU trains; no CPU kernels needed.
    if machine.kind == "tpu" and not machine.accelerator_type:
        env.update(TPU_VM_PJRT_ENV)  # TensorFlow on TPU v5e/v5p VMs runs on PJRT.
    container: dict[str, Any] = {"image_uri": image}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    # Several machines: the first pool is the chief, the second the other workers; Vertex
    # describes them to every replica in TF_CONFIG (multi_worker reads it).
    pools = [{"machine_spec": machine.machine_spec(), "replica_count": count,
              "container_spec": container}
             for count in (1, machine.hosts - 1) if count]
    spec: dict[str, Any] = {"worker_pool_specs": pools}
    if service_account:
        spec["service_account"] = service_account
    return spec


def trainer_custom_config(project: str, region: str, machine: TrainerMachine, image: str,
                          display_name: str, service_account: str = "") -> dict[str, Any]:
    """The Vertex keys of the Trainer's custom_config (merged with the experiment's)."""
    from tfx.v1.extensions import google_cloud_ai_platform as gcai

    return {
        gcai.ENABLE_VERTEX_KEY: True,
        gcai.VERTEX_REGION_KEY: region,
        gcai.TRAINING_ARGS_KEY: {
            "project": project,
            "display_name": display_name,
            "job_spec": job_spec(machine, image, service_account=service_account),
        },
    }


def vertex_trainer_factory(project: str, region: str, machine: TrainerMachine, image: str,
                           pipeline_name: str, service_account: str = ""
                           ) -> Callable[..., Any]:
    """A `create_pipeline(trainer_factory=...)` hook: each stage's Trainer as a Vertex custom
    job on `machine`; refuses a stage whose strategy does not fit the machine."""

    def make_trainer(experiment: Experiment, **trainer_kwargs: Any):
        from tfx.v1.extensions import google_cloud_ai_platform as gcai

        expected = machine.strategy
        if experiment.strategy != expected and not (
                machine.replicas == 1 and experiment.strategy in ("default", "mirrored")):
            raise common.RunnerError(
                f"stage {experiment.name!r} trains with strategy {experiment.strategy!r} but "
                f"its Vertex job runs on {machine.machine_type} ({expected!r}); "
                "see apply_machine")
        custom_config = dict(trainer_kwargs.pop("custom_config", None) or {})
        custom_config.update(trainer_custom_config(
            project, region, machine, image, f"{pipeline_name}-{experiment.name}",
            service_account))
        return gcai.Trainer(custom_config=custom_config, **trainer_kwargs)

    return make_trainer


def no_baseline(experiment: Experiment, candidate: Any) -> None:
    """A `create_pipeline(baseline_factory=...)` hook: no baseline model on Vertex.

    Vertex compiles only TFX's own resolver strategies, and LatestBlessedModelStrategy becomes
    a query over every blessed model of the project and region, not scoped to the pipeline or
    the stage: a stage would be compared with another stage's, or another pipeline's, model.
    Without a baseline the blessing checks the overall top-1 floor (--min_top1) only.
    """
    del experiment, candidate
    return None


# ---------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = common.runner_parser(__doc__)
    vertex = parser.add_argument_group("vertex")
    vertex.add_argument("--project", default="", help="Google Cloud project (required).")
    vertex.add_argument("--region", default="", help="Vertex AI region, e.g. us-central1 "
                                                     "(required).")
    vertex.add_argument("--image", default="",
                        help="Pipeline image (docker/Dockerfile) of every component "
                             "(required); tag it with the code revision.")
    vertex.add_argument("--trainer_image", default="",
                        help="Image of the Trainer's custom job (default --image; required "
                             "for TPUs: docker/Dockerfile.tpu).")
    vertex.add_argument("--trainer_machine", choices=MACHINE_KINDS, default="gpu",
                        help="Trainer custom-job machine (default gpu: a2-highgpu-1g, "
                             "1 x A100; tpu: cloud-tpu, TPU_V3 x 8; cpu: n1-standard-16).")
    vertex.add_argument("--machine_type", default="",
                        help="Override the machine type, e.g. a2-highgpu-4g or "
                             "ct5lp-hightpu-4t (TPU v5e VM).")
    vertex.add_argument("--accelerator_type", default="",
                        help="Override the accelerator, e.g. NVIDIA_L4 or TPU_V2.")
    vertex.add_argument("--accelerator_count", type=int, default=0,
                        help="Accelerators per machine (GPUs > 1 train with 'mirrored').")
    vertex.add_argument("--tpu_topology", default="", help="TPU topology, e.g. 2x2 (v5e).")
    vertex.add_argument("--trainer_replicas", type=int, default=1,
                        help="Machines of each Trainer job (default 1); more train with "
                             "strategy multi_worker, a chief and N-1 workers of the same "
                             "machine type (docs/scale.md).")
    vertex.add_argument("--service_account", default="",
                        help="Service account of the pipeline and the Trainer jobs.")
    vertex.add_argument("--schema_path", default=common.IMAGE_SCHEMA_PATH,
                        help="The curated schema as the components see it (default: the "
                             "copy in the pipeline image).")
    vertex.add_argument("--output", default="s4l_vertex_pipeline.json",
                        help="Where the compiled pipeline JSON is written.")
    vertex.add_argument("--submit", action="store_true",
                        help="Submit the compiled pipeline (aiplatform.PipelineJob).")
    vertex.add_argument("--dataflow", action="store_true",
                        help="Run the Beam components on Dataflow (the pipeline image as "
                             "worker SDK container; temp files under PIPELINE_ROOT/beam).")
    vertex.add_argument("--dataflow_max_workers", type=int, default=10,
                        help="Dataflow autoscaling limit with --dataflow (default 10).")
    return parser


def create_vertex_pipeline(args: argparse.Namespace, beam_args: list[str] | None = None):
    """The pipeline for Vertex: the stages placed on the Trainer machine, gs:// paths, the
    installed user code, Vertex Trainer jobs. Raises ValueError on bad settings."""
    from pipeline import pipeline as pipeline_lib
    from pipeline.runners import dataflow

    for flag in ("project", "region", "image"):
        if not getattr(args, flag):
            raise common.RunnerError(f"--{flag} is required")
    pipeline_root = common.require_gcs("--pipeline_root", args.pipeline_root)
    push_destination = common.require_gcs(
        "--push_destination", args.push_destination or f"{pipeline_root}/serving_model")
    machine = make_machine(args.trainer_machine, args.machine_type, args.accelerator_type,
                           args.accelerator_count, args.tpu_topology, args.trainer_replicas)
    trainer_image = args.trainer_image or args.image
    if machine.kind == "tpu" and not args.trainer_image:
        raise common.RunnerError("a TPU Trainer needs --trainer_image (docker/Dockerfile.tpu: "
                                 "TensorFlow built for TPU VMs)")
    if args.strategy == "tpu" and not args.tpu:
        args.tpu = "local"  # The TPU VM the Trainer job runs on.
    experiments, data = common.prepare_remote(args)
    experiments = apply_machine(experiments, machine, args.strategy, args.tpu)
    if args.dataflow:
        runner_args = dataflow.dataflow_beam_args(
            project=args.project, region=args.region,
            temp_location=f"{pipeline_root}/beam/tmp", image=args.image,
            max_num_workers=args.dataflow_max_workers, service_account=args.service_account)
    else:
        runner_args = cli.direct_beam_args(args.beam_workers)
    # Vertex keeps ML Metadata itself: no SQLite file.
    paths = layout.remote_paths(args.output_dir, pipeline_root, push_destination,
                                args.hub_destination, local_metadata=False)
    spec = cli.run_spec(args, paths, [*runner_args, *(beam_args or [])],
                        prepared=(experiments, data))
    kwargs = spec.pipeline_kwargs()
    kwargs["schema_path"] = args.schema_path
    return pipeline_lib.create_pipeline(
        **kwargs,
        baseline_factory=no_baseline,
        trainer_factory=vertex_trainer_factory(
            args.project, args.region, machine, trainer_image, args.pipeline_name,
            args.service_account))


def compile_pipeline(pipeline, image: str, output: str) -> dict[str, Any]:
    """Writes the Vertex pipeline JSON to `output` and returns it; no cloud access."""
    from tfx import v1 as tfx

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output)),
        output_filename=os.path.basename(output))
    return runner.run(pipeline, write_out=True)


def submit(output: str, args: argparse.Namespace) -> str:
    """Submits the compiled JSON as a Vertex PipelineJob; returns its resource name."""
    from google.cloud import aiplatform

    aiplatform.init(project=args.project, location=args.region)
    job = aiplatform.PipelineJob(display_name=args.pipeline_name, template_path=output,
                                 pipeline_root=args.pipeline_root,
                                 enable_caching=not args.no_cache)
    job.submit(service_account=args.service_account or None)
    return job.resource_name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own_args, beam_args = cli.split_beam_args(argv)
    args = build_parser().parse_args(own_args)
    try:
        pipeline = create_vertex_pipeline(args, beam_args)
    except ValueError as e:
        print(f"vertex_runner: error: {e}", file=sys.stderr)
        return 2
    compile_pipeline(pipeline, args.image, args.output)
    print(f"Vertex pipeline written to {os.path.abspath(args.output)}")
    if args.submit:
        print(f"Submitted {submit(args.output, args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
