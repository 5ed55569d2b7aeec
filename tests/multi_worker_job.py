"""One replica of a Trainer job: runs `run_fn` as TFX's Trainer executor would on each
replica of a Vertex job (TF_CONFIG from the environment), then checks what the executor
checks after it: that the serving model exists.

  python tests/multi_worker_job.py JOB.json MODEL_RUN_DIR [CPU_REPLICAS]

JOB.json holds the FnArgs fields (train_files, eval_files, transform_output,
serving_model_dir, custom_config). With CPU_REPLICAS (a reference run of strategy
"mirrored"), the CPU is split into that many logical devices and the mirrored strategy
trains one replica on each: one process with the replicas of a multi-worker job.
"""

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import logging  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

from modules.trainer import trainer_module  # noqa: E402


def split_the_cpu(replicas: int) -> None:
    """Makes strategy "mirrored" train `replicas` replicas on logical CPU devices."""
    import functools

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    tf.distribute.MirroredStrategy = functools.partial(
        tf.distribute.MirroredStrategy, devices=[f"/cpu:{k}" for k in range(replicas)])


def main(job_path: str, model_run_dir: str, cpu_replicas: str = "") -> None:
    logging.set_verbosity(logging.INFO)
    if cpu_replicas:
        split_the_cpu(int(cpu_replicas))
    with open(job_path) as f:
        job = json.load(f)
    fn_args = tfx.components.FnArgs(model_run_dir=model_run_dir, base_model=None, **job)
    trainer_module.run_fn(fn_args)
    if not os.path.isdir(fn_args.serving_model_dir):
        raise RuntimeError("run_fn failed to generate model.")  # TFX's executor's check
    print("replica finished", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
