"""Runs the S4L pipeline locally: LocalDagRunner, SQLite ML Metadata, in-process Beam.

Example (the README's main job):
  .venv/bin/python beam_runner.py --preset supervised --labelled_fraction 0.1

Everything after `--` is passed to Beam as pipeline arguments.
"""

from __future__ import annotations

import os

# tf-keras, not Keras 3, must back tf.keras before TensorFlow is first imported (TFX_NOTES 2).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# oneDNN kernels: about 2x the small ResNet's training throughput on this AVX2 CPU
# (benchmarks/README.md); TF 2.16 leaves them off on CPUs without AVX-512.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import data_schema  # noqa: E402
import modules  # noqa: E402

if TYPE_CHECKING:
    from pipeline.config import DataConfig

# google-api-core warns on every import that Python 3.10 is old; TFX 1.16 needs 3.10.
warnings.filterwarnings("ignore", category=FutureWarning, module="google.*")

MODULES_DIR = os.path.dirname(os.path.abspath(modules.__file__))
TRANSFORM_MODULE = os.path.join(MODULES_DIR, "transform", "preprocessing.py")
TRAINER_MODULE = os.path.join(MODULES_DIR, "trainer", "trainer_module.py")
# data_schema is a package, so the schema is found in non-editable installs (containers) too.
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(data_schema.__file__)),
                           "schema.pbtxt")
IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 train (S4L_SPEC section 1.1)
DATASET_OF_SOURCE = {"fashion_mnist": "fashion_mnist", "image_folder": "fashion_mnist",
                     "imagenet_tfrecords": "imagenet"}


class CliError(ValueError):
    """A bad command line; reported before any work starts."""


def build_parser() -> argparse.ArgumentParser:
    from pipeline import imported_examples, presets
    from pipeline.components.example_gen import sources

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--source", choices=(*sources.SOURCES, imported_examples.NAME),
                      default="fashion_mnist",
                      help="fashion_mnist: IDX files (default: Debian's dataset-fashion-mnist); "
                           "image_folder: DIR/{train,test}/<class>/<image>; imagenet_tfrecords: "
                           "slim-built train-*/validation-* shards (labels 1..1000); examples: "
                           "already-split tf.Examples, DIR/Split-{labelled,unlabelled,eval}/ "
                           "(e.g. an earlier run's S4LExampleGen output), registered in place "
                           "with an Importer, nothing copied.")
    data.add_argument("--data_path", default="",
                      help="Directory of the source (default for fashion_mnist: "
                           f"{sources.FASHION_MNIST_DIR}).")
    data.add_argument("--labelled_fraction", type=float, default=0.1,
                      help="Fraction of training images that keep their label, in (0, 1]; "
                           "a class-balanced, seeded sample (default 0.1).")
    data.add_argument("--label_map", default="",
                      help="S4L label-map file ({\"values\": [file names]}) naming exactly the "
                           "labelled images; overrides --labelled_fraction.")
    data.add_argument("--exclude_labelled", action="store_true",
                      help="Leave the labelled images out of the unlabelled split (S4L keeps "
                           "them in).")
    data.add_argument("--num_classes", type=int, default=0,
                      help="Classes of an imagenet_tfrecords source (default 1000), or of "
                           "examples without split_stats.json.")
    data.add_argument("--label_offset", type=int, default=1,
                      help="Subtracted from imagenet_tfrecords labels at ingestion (slim: 1).")
    data.add_argument("--num_shards", type=int, default=4, help="TFRecord shards per split.")
    data.add_argument("--validation_images", type=int, default=0,
                      help="Evaluate on this many training images (class-balanced, seeded, in "
                           "neither training split) instead of the test set: for tuning "
                           "settings without reading the test images (default 0: test set).")
    data.add_argument("--seed", type=int, default=0,
                      help="Seed of the labelled subset and of training (default 0).")

    model = parser.add_argument_group("method and training")
    model.add_argument("--preset", default="supervised", type=_preset_list,
                       help="Named experiment (one per original S4L config), or several "
                            "separated by commas to train them in one pipeline; presets that "
                            "build on others (pseudo_labels, moam_step_2/3) bring their "
                            "earlier stages.")
    model.add_argument("--method", default=None, type=_preset_list, help="Alias of --preset.")
    model.add_argument("--dataset", default=None, choices=("imagenet", "fashion_mnist",
                                                          "synthetic"),
                       help="Which variant of the preset (default: from --source).")
    model.add_argument("--labels", default=None, choices=("1pct", "10pct"),
                       help="Preset variant for the label budget (default: from the fraction, "
                            "or the size of an ImageNet --label_map).")
    model.add_argument("--train_epochs", type=float, default=None,
                       help="Total training length in labelled epochs; the warm-up and decay "
                            "epochs scale with it (default: the preset's; small-image presets "
                            "fit it to the data, see docs/recipe.md).")
    model.add_argument("--batch_size", type=int, default=None, help="Labelled batch size B.")
    model.add_argument("--eval_batch_size", type=int, default=None)
    model.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="FIELD=VALUE",
                       help="Override any experiment field, e.g. --set weight_decay=5e-4 "
                            "--set losses=supervised:1.0 (repeatable).")
    model.add_argument("--strategy", choices=("default", "mirrored", "tpu"), default=None,
                       help="Distribution strategy of the Trainer.")
    model.add_argument("--tpu", default="", help="TPU name or grpc:// address (strategy tpu).")

    run = parser.add_argument_group("run")
    run.add_argument("--pipeline_name", default="s4l",
                     help="Pipeline name; ML Metadata keeps runs of one name together.")
    run.add_argument("--output_dir", default=os.path.join("runs", "fashion_mnist"),
                     help="Where summary.json and the pushed model go.")
    run.add_argument("--pipeline_root", default="",
                     help="Artifacts and metadata.sqlite (default OUTPUT_DIR/tfx).")
    run.add_argument("--push_destination", default="",
                     help="Directory or gs:// URI blessed models are pushed to "
                          "(default OUTPUT_DIR/serving_model).")
    run.add_argument("--hub_destination", default="",
                     help="Directory or gs:// URI blessed models are published to as TF Hub "
                          "modules, <dir>/<stage>/<version>/ (default PUSH_DESTINATION/hub).")
    run.add_argument("--hub_tarball", action="store_true",
                     help="Also write each Hub module as a .tar.gz (TF Hub's compressed form).")
    run.add_argument("--min_top1", type=float, default=0.5,
                     help="Blessing needs at least this overall top-1 (default 0.5).")
    run.add_argument("--max_top1_drop", type=float, default=0.01,
                     help="... and at most this drop against the latest blessed model.")
    run.add_argument("--no_cache", action="store_true", help="Disable TFX caching.")
    run.add_argument("--beam_workers", type=int, default=1,
                     help="Beam DirectRunner workers: 1 runs in-process (default); N > 1 runs "
                          "N worker processes (multi_processing mode).")
    run.add_argument("--verbose", action="store_true",
                     help="Show every INFO log line (default: progress lines only).")
    parser.epilog = ("presets: " + ", ".join(presets.PRESETS)
                     + "\nBeam arguments go after --, e.g. -- --direct_num_workers=2")
    return parser


def _preset_list(text: str) -> list[str]:
    from pipeline import presets

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in presets.PRESETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown preset(s) {unknown or text!r}; choose from {', '.join(presets.PRESETS)}")
    return names


_PROGRESS_PATTERNS = ("Component ", "S4LExampleGen:", "Training ", "Final eval", "Running pipeline",
                      "not blessed", "Model pushed", "Rejected record", "Initialised ")


class _ProgressFilter:
    """Keeps the progress lines of a run (components starting and finishing, conversion
    counts, training) and every warning; drops TFX's multi-page INFO dumps of protos."""

    def filter(self, record) -> bool:
        if record.levelno >= 30:
            return True
        message = record.getMessage()
        return "\n" not in message and any(p in message for p in _PROGRESS_PATTERNS)


def split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def make_source(args: argparse.Namespace):
    """The data source; checks the path and layout now, before any work starts."""
    from pipeline import imported_examples
    from pipeline.components.example_gen import sources

    if args.source == imported_examples.NAME:
        if args.label_map:
            raise CliError("--label_map selects the labelled images of a source to convert; "
                           "--source examples uses its Split-labelled/ as it is")
        return imported_examples.ImportedExamples(args.data_path, num_classes=args.num_classes)
    return sources.make_source(args.source, args.data_path,
                               num_classes=args.num_classes or 1000,
                               label_offset=args.label_offset)


def make_experiments(args: argparse.Namespace, num_classes: int, source=None) -> list:
    """The preset's stages (itself after the presets it builds on), each with the command
    line's settings and --set overrides applied. Imported examples (`source`) say which
    dataset variant and labelled fraction they hold where their split_stats.json does."""
    from pipeline import imported_examples, presets

    dataset = args.dataset or DATASET_OF_SOURCE.get(args.source)
    fraction = args.labelled_fraction
    if isinstance(source, imported_examples.ImportedExamples):
        dataset = dataset or DATASET_OF_SOURCE.get(source.converted_from())
        fraction = source.labelled_fraction() or fraction
    elif args.label_map and dataset == "imagenet" and not args.labels:
        from pipeline.components.example_gen import splits

        if "://" in args.label_map:
            raise CliError(f"--label_map {args.label_map} is not read on this machine: give "
                           "--labels 1pct or 10pct")
        # The paper's maps: 128,000 names (10 %) or 13,000 (1 %) of ILSVRC-2012 train.
        fraction = len(splits.load_label_map(args.label_map)) / IMAGENET_TRAIN_IMAGES
    if not dataset:
        raise CliError(f"--source {args.source}: give --dataset (the preset variant); the "
                       "data does not say which it is")
    labels = args.labels or ("1pct" if 0 < fraction <= 0.05 else "10pct")
    stages = {}
    for name in args.method or args.preset:
        for exp in presets.stages(name, dataset=dataset, labels=labels):
            stages.setdefault(exp.name, exp)
    return [apply_args(exp, args, dataset, num_classes) for exp in stages.values()]


def apply_args(exp, args: argparse.Namespace, dataset: str, num_classes: int):
    changes = {"seed": args.seed, "num_classes": num_classes}
    if args.train_epochs is not None:
        factor = args.train_epochs / exp.schedule_epochs[-1]
        scaled = [e * factor for e in exp.schedule_epochs[:-1]] + [args.train_epochs]
        changes["schedule_epochs"] = tuple(scaled)
        changes.update(min_steps=0, max_steps=0)  # exactly the epochs asked for
    for field in ("batch_size", "eval_batch_size", "strategy"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    if args.tpu:
        changes["tpu_address"] = args.tpu
    if args.label_map or dataset != "imagenet" or args.source != "imagenet_tfrecords":
        changes["num_labelled_examples"] = 0  # Counted from the data.
    exp = exp.replace(**changes)
    overrides = {}
    for item in args.overrides:
        if "=" not in item:
            raise CliError(f"--set expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    return exp.with_overrides(overrides).validate()


def make_data_config(args: argparse.Namespace, source, num_classes: int):
    from pipeline.components.example_gen import splits
    from pipeline.config import DataConfig

    if not args.label_map:
        splits.check_fraction(args.labelled_fraction)
    elif not os.path.isfile(args.label_map):
        raise CliError(f"--label_map {args.label_map!r} does not exist")
    data_path = args.data_path
    if data_path and "://" not in data_path:
        data_path = os.path.abspath(data_path)
    return DataConfig(
        source=args.source, data_path=data_path,
        labelled_fraction=args.labelled_fraction,
        label_map_path=os.path.abspath(args.label_map) if args.label_map else "",
        seed=args.seed, exclude_labelled=args.exclude_labelled, num_shards=args.num_shards,
        validation_images=args.validation_images,
        num_classes=num_classes, label_offset=args.label_offset,
        fingerprint=_fingerprint(source, args.label_map))


def _fingerprint(source, label_map: str) -> str:
    """The source's fingerprint, and the label map's contents: ExampleGen's parameters hold
    only the map's path, so an edit in place must change the cache key too."""
    fingerprint = source.fingerprint()
    if label_map:
        import hashlib

        with open(label_map, "rb") as f:
            fingerprint += ":" + hashlib.sha256(f.read()).hexdigest()[:16]
    return fingerprint


def check_flags(args: argparse.Namespace) -> None:
    """Raises CliError for flag values that no run can use."""
    for flag in ("min_top1", "max_top1_drop"):
        value = getattr(args, flag)
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise CliError(f"--{flag} {value} must be a fraction in [0, 1] (0.5 means 50 %)")
    if args.train_epochs is not None and not (math.isfinite(args.train_epochs)
                                              and args.train_epochs > 0):
        raise CliError(f"--train_epochs {args.train_epochs} must be a finite number > 0")
    if args.validation_images < 0:
        raise CliError(f"--validation_images {args.validation_images} must be >= 0")
    if args.validation_images and args.source == "examples":
        raise CliError("--validation_images splits the training images at conversion; "
                       "--source examples is already split")
    if args.num_shards < 1:
        raise CliError(f"--num_shards {args.num_shards} must be >= 1")
    if args.exclude_labelled and not args.label_map and args.labelled_fraction >= 1.0:
        raise CliError("--exclude_labelled with --labelled_fraction 1.0 leaves no unlabelled "
                       "images: lower the fraction or drop --exclude_labelled")


def prepare(args: argparse.Namespace) -> tuple[list, DataConfig]:
    """The validated stages and data settings of a command line (every runner's first step).

    Raises:
      ValueError: bad flags, presets, paths or replica counts, before any work starts.
    """
    from modules.trainer import training
    from pipeline import pipeline as pipeline_lib

    check_flags(args)
    source = make_source(args)
    num_classes = len(source.class_names())
    experiments = make_experiments(args, num_classes, source)
    data = make_data_config(args, source, num_classes)
    for experiment in experiments:
        replicas = training.expected_replicas(experiment)
        if replicas:
            training.check_replicas(experiment, replicas)
    pipeline_lib.check_stages(experiments)
    return experiments, data


def pipeline_kwargs(args: argparse.Namespace, experiments: list, data: DataConfig, *,
                    pipeline_root: str, push_destination: str) -> dict[str, Any]:
    """`create_pipeline` arguments that every runner takes from the command line; the runner
    adds metadata_connection_config, beam_pipeline_args and its own hooks."""
    from pipeline.config import EvalConfig

    return dict(
        pipeline_name=args.pipeline_name, pipeline_root=pipeline_root, data=data,
        experiments=experiments, schema_path=SCHEMA_PATH, transform_module=TRANSFORM_MODULE,
        trainer_module=TRAINER_MODULE, push_destination=push_destination,
        hub_destination=args.hub_destination, hub_tarball=args.hub_tarball,
        thresholds=EvalConfig(min_top1=args.min_top1, max_top1_drop=args.max_top1_drop),
        enable_cache=not args.no_cache)


def direct_beam_args(workers: int = 1) -> list[str]:
    """DirectRunner arguments: in-process for one worker, else `workers` processes.

    Multi-processing mode has a history of hangs and dropped records (TFX_NOTES section 3);
    tests/runners/test_direct_multiprocess.py checks that it gives the in-process results.
    """
    if workers < 1:
        raise CliError(f"--beam_workers must be >= 1, got {workers}")
    if workers == 1:
        return ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    return ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own_args, beam_args = split_beam_args(argv)
    args = build_parser().parse_args(own_args)
    sys.stdout.reconfigure(line_buffering=True)  # Keras progress lines appear as they happen.

    import logging as std_logging

    from absl import logging
    from tfx import v1 as tfx

    from pipeline import pipeline as pipeline_lib
    from pipeline import report, run_summary

    std_logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                            force=True)
    logging.set_verbosity(logging.INFO)
    if not args.verbose:
        logging.get_absl_logger().addFilter(_ProgressFilter())
    output_dir = os.path.abspath(args.output_dir)
    pipeline_root = os.path.abspath(args.pipeline_root or os.path.join(output_dir, "tfx"))
    metadata_path = os.path.join(pipeline_root, "metadata.sqlite")
    push_destination = args.push_destination or os.path.join(output_dir, "serving_model")
    try:
        experiments, data = prepare(args)
        direct_args = direct_beam_args(args.beam_workers)
        kwargs = pipeline_kwargs(args, experiments, data, pipeline_root=pipeline_root,
                                 push_destination=push_destination)
        pipeline_lib.check_destinations(
            push_destination,
            pipeline_lib.resolve_hub_destination(push_destination, kwargs["hub_destination"]),
            [e.name for e in experiments])
    except ValueError as e:  # Bad flags, presets, paths: say so before any work starts.
        print(f"beam_runner: error: {e}", file=sys.stderr)
        return 2
    # (The SQLite connection config creates the pipeline root.)
    pipeline = pipeline_lib.create_pipeline(
        **kwargs, metadata_connection_config=tfx.orchestration.metadata
        .sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=[*direct_args, *beam_args])
    os.makedirs(pipeline_root, exist_ok=True)
    logging.info("Running pipeline %s (stages %s) under %s", args.pipeline_name,
                 ", ".join(e.name for e in experiments), pipeline_root)
    start = time.time()
    tfx.orchestration.LocalDagRunner().run(pipeline)
    elapsed = time.time() - start

    # The last stage's results at the top level; every stage's under "stages".
    stage_summaries = {e.name: run_summary.summarize(metadata_path, args.pipeline_name, e.name)
                       for e in experiments}
    summary = dict(stage_summaries[experiments[-1].name])
    summary.update(wall_time_s=round(elapsed, 1), pipeline_root=pipeline_root,
                   metadata=metadata_path, experiment=experiments[-1].to_dict(),
                   command=shlex.join(["beam_runner.py", *argv]))
    if len(experiments) > 1:
        summary["stages"] = stage_summaries
    summary["report"] = os.path.join(output_dir, "report.html")
    os.makedirs(output_dir, exist_ok=True)
    summary_path = os.path.join(output_dir, "summary.json")
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    for name, stage in summary.get("stages", {}).items():
        if name != experiments[-1].name:
            print(run_summary.format_summary(stage))
    print(run_summary.format_summary(summary))
    print(f"  wall time:     {elapsed / 60:.1f} min")
    print(f"  summary:       {summary_path}")
    try:
        print(f"  report:        {report.render_report(summary, summary['report'])}")
    except Exception as e:  # noqa: BLE001 - the run succeeded; a report failure must not hide it.
        logging.warning("Could not write the report %s: %s", summary["report"], e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
