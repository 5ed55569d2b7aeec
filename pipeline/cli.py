"""The command line: flags -> a validated run specification (experiments, data, paths).

Nothing here runs a pipeline: `beam_runner.py` (pipeline/runners/local.py) and the other
runners build their `create_pipeline(...)` from a `RunSpec`, so every runner takes the same
--preset, --labelled_fraction, --data_path, ... flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline import layout
from pipeline.config import DataConfig, EvalConfig, SplitOptions

if TYPE_CHECKING:
    from modules.trainer.experiment import Experiment

DESCRIPTION = """Runs the S4L pipeline locally: LocalDagRunner, SQLite ML Metadata, in-process Beam.

Example (the README's main job):
  .venv/bin/python beam_runner.py --preset supervised --labelled_fraction 0.1

Everything after `--` is passed to Beam as pipeline arguments.
"""
IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 train (docs/original_s4l.md §1.1)


class CliError(ValueError):
    """A bad command line; reported before any work starts."""


class _Parser(argparse.ArgumentParser):
    """Fills `--source`, when not given, from the layout of `--data_path`, and
    `--output_dir` from the data's name."""

    def parse_known_args(self, args=None, namespace=None):
        from pipeline.components import source

        parsed, rest = super().parse_known_args(args, namespace)
        if getattr(parsed, "source", "") is None:
            try:
                parsed.source = source.infer_name(parsed.data_path)
            except ValueError as error:
                self.error(str(error))
        if getattr(parsed, "output_dir", "") is None:
            parsed.output_dir = default_output_dir(parsed.data_path)
        return parsed, rest


def default_output_dir(data_path: str) -> str:
    """runs/<the data folder's name>; runs/fashion_mnist for the default data."""
    from pipeline.components.example_gen import sources

    path = data_path.rstrip("/")
    if not path or os.path.abspath(path) == sources.FASHION_MNIST_DIR:
        return os.path.join("runs", "fashion_mnist")
    return os.path.join("runs", os.path.basename(path))


def build_parser() -> argparse.ArgumentParser:
    from modules.trainer.experiment import STRATEGIES
    from pipeline import presets
    from pipeline.components import data_gate, source
    from pipeline.components.example_gen import sources

    parser = _Parser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--source", choices=source.NAMES, default=None,
                      help="Default: read from --data_path's layout (no path: Fashion-MNIST). "
                           "fashion_mnist: IDX files (default: Debian's dataset-fashion-mnist); "
                           "image_folder: DIR/{train,test}/<class>/<image>; imagenet_tfrecords: "
                           "slim-built train-*/validation-* shards (labels 1..1000); examples: "
                           "already-split tf.Examples, DIR/Split-{labelled,unlabelled,eval}/ "
                           "(e.g. an earlier run's S4LExampleGen output), registered in place "
                           "with an Importer, nothing copied.")
    data.add_argument("--data_path", default="",
                      help="Directory of the source (default for fashion_mnist: "
                           f"{sources.FASHION_MNIST_DIR}).")
    data.add_argument("--labelled_fraction", type=float,
                      default=SplitOptions.labelled_fraction,
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
    data.add_argument("--num_shards", type=int, default=SplitOptions.num_shards,
                      help="TFRecord shards per split at least, one per conversion work unit "
                           "(more where a part exceeds 16,384 images per shard; "
                           "imagenet_tfrecords: one per input shard).")
    data.add_argument("--validation_images", type=int,
                      default=SplitOptions.validation_images,
                      help="Evaluate on this many training images (class-balanced, seeded, in "
                           "neither training split) instead of the test set: for tuning "
                           "settings without reading the test images (default 0: test set).")
    data.add_argument("--stop_on_anomalies", choices=data_gate.STOP_ON,
                      default=data_gate.DEFAULT_STOP_ON,
                      help="ExampleValidator checks every record against the schema and the "
                           "class count; wrong_data: stop before training on "
                           "anomalies of the images or labels (missing, wrong type, label out "
                           "of range) or an empty split; any: on every anomaly; never: report "
                           "them in the summary only.")
    data.add_argument("--seed", type=int, default=SplitOptions.seed,
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
                       metavar="[STAGE.]FIELD=VALUE",
                       help="Override any experiment field, e.g. --set weight_decay=5e-4 "
                            "--set losses=supervised:1.0 (repeatable); every stage's, or "
                            "with a stage name one stage's only, e.g. --set "
                            "moam_step_2.pseudo_label_views=averaged.")
    model.add_argument("--strategy", choices=STRATEGIES, default=None,
                       help="Distribution strategy of the Trainer (multi_worker: several "
                            "machines from TF_CONFIG, docs/scale.md).")
    model.add_argument("--tpu", default="", help="TPU name or grpc:// address (strategy tpu).")

    run = parser.add_argument_group("run")
    run.add_argument("--pipeline_name", default="s4l",
                     help="Pipeline name; ML Metadata keeps runs of one name together.")
    run.add_argument("--output_dir", default=None,
                     help="Where summary.json, the pushed model and (by default) the pipeline "
                          "root go (default runs/<name of the --data_path folder>; "
                          "runs/fashion_mnist for the default data). Runs of other data in "
                          "one output directory would share ML Metadata and take each "
                          "other's blessed models as their baselines.")
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


def split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def make_source(args: argparse.Namespace):
    """The data source (a `pipeline.components.source.Source`); checks the path and layout
    now, before any work starts."""
    from pipeline.components import source

    return source.open_source(args.source, args.data_path, num_classes=args.num_classes,
                              label_offset=args.label_offset)


def check_split_flags(args: argparse.Namespace) -> None:
    """Split settings on data that is already split: an error, not silently ignored."""
    from pipeline.components import source

    if not source.source_type(args.source).already_split:
        return
    if args.label_map:
        raise CliError(f"--label_map selects the labelled images of a source to convert; "
                       f"--source {args.source} uses its Split-labelled/ as it is")
    if args.validation_images:
        raise CliError(f"--validation_images splits the training images at conversion; "
                       f"--source {args.source} is already split")


def make_experiments(args: argparse.Namespace, num_classes: int, source=None) -> list:
    """The preset's stages (itself after the presets it builds on), each with the command
    line's settings and --set overrides applied. Imported examples (`source`) say which
    dataset variant and labelled fraction they hold where their split_stats.json does."""
    from pipeline import presets
    from pipeline.components import source as source_lib

    # The data's own word first (already-split examples say what they were converted
    # from); a source that is not opened here (`source` None) by its kind.
    kind = source_lib.source_type(args.source)
    dataset = args.dataset or (source.dataset_variant() if source is not None else kind.dataset)
    fraction = (source.labelled_fraction() if source is not None else None) or (
        args.labelled_fraction)
    if args.label_map and dataset == "imagenet" and not args.labels:
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
    overrides = parse_overrides(args.overrides)
    for stage in overrides:
        if stage and stage not in stages:
            raise CliError(f"--set {stage}.…: no stage {stage!r} in this run; its stages: "
                           f"{', '.join(stages)}")
    return [apply_args(exp, args, dataset, num_classes, overrides) for exp in stages.values()]


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """`--set [STAGE.]FIELD=VALUE` items -> {stage name or "" (every stage): {field: value}}."""
    overrides: dict[str, dict[str, str]] = {}
    for item in items:
        if "=" not in item:
            raise CliError(f"--set expects [STAGE.]FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        stage, _, field = key.strip().rpartition(".")
        overrides.setdefault(stage, {})[field] = value.strip()
    return overrides


def apply_args(exp, args: argparse.Namespace, dataset: str, num_classes: int,
               overrides: dict[str, dict[str, str]]):
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
    # Every stage's overrides first, then this stage's own (a stage's setting wins).
    own = overrides.get(exp.name, {})
    return exp.with_overrides(overrides.get("", {})).with_overrides(own)  # validated in prepare()


def make_data_config(args: argparse.Namespace, source, num_classes: int) -> DataConfig:
    if args.label_map and not os.path.isfile(args.label_map):
        raise CliError(f"--label_map {args.label_map!r} does not exist")
    data_path = args.data_path
    if data_path and "://" not in data_path:
        data_path = os.path.abspath(data_path)
    label_map = os.path.abspath(args.label_map) if args.label_map else ""
    return DataConfig(source=args.source, data_path=data_path,
                      splits=split_options(args, label_map), num_classes=num_classes,
                      label_offset=args.label_offset,
                      fingerprint=_fingerprint(source, args.label_map),
                      stop_on_anomalies=args.stop_on_anomalies)


def split_options(args: argparse.Namespace, label_map_path: str) -> SplitOptions:
    """The split flags as SplitOptions (which checks them)."""
    return SplitOptions(labelled_fraction=args.labelled_fraction, label_map_path=label_map_path,
                        seed=args.seed, exclude_labelled=args.exclude_labelled,
                        num_shards=args.num_shards, validation_images=args.validation_images)


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
    check_split_flags(args)
    if args.exclude_labelled and not args.label_map and args.labelled_fraction >= 1.0:
        raise CliError("--exclude_labelled with --labelled_fraction 1.0 leaves no unlabelled "
                       "images: lower the fraction or drop --exclude_labelled")


def prepare(args: argparse.Namespace) -> tuple[list, DataConfig]:
    """The validated stages and data settings of a command line (every runner's first step).

    Raises:
      ValueError: bad flags, presets, paths or replica counts, before any work starts.
    """
    from pipeline import presets

    check_flags(args)
    source = make_source(args)
    num_classes = len(source.class_names())
    experiments = make_experiments(args, num_classes, source)
    data = make_data_config(args, source, num_classes)
    presets.check_stages(experiments)
    for experiment in experiments:
        if experiment.strategy == "multi_worker":
            raise CliError(
                "--strategy multi_worker trains on several machines, each running the Trainer "
                "in a process of its own: use the Vertex runner with --trainer_replicas N "
                "(docs/scale.md); this runner trains inside its own process")
        if experiment.strategy != "default":  # (Needs TensorFlow: list the local devices.)
            from modules.trainer import training

            replicas = training.expected_replicas(experiment)
            if replicas:
                training.check_replicas(experiment, replicas)
    return experiments, data


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a runner needs for `create_pipeline(...)` from one command line; the
    runner adds its own hooks (Trainer factory, installed modules, ...)."""

    pipeline_name: str
    experiments: tuple[Experiment, ...]
    data: DataConfig
    paths: layout.RunPaths
    thresholds: EvalConfig
    hub_tarball: bool = False
    enable_cache: bool = True
    beam_args: tuple[str, ...] = ()
    # After beam_args, for S4LExampleGen alone (create_pipeline's example_gen_beam_args).
    example_gen_beam_args: tuple[str, ...] = ()

    def pipeline_kwargs(self) -> dict[str, Any]:
        """`create_pipeline` arguments; SQLite ML Metadata where the paths name a file."""
        kwargs = dict(
            pipeline_name=self.pipeline_name, pipeline_root=self.paths.pipeline_root,
            data=self.data, experiments=list(self.experiments),
            schema_path=layout.SCHEMA_PATH,
            push_destination=self.paths.push_destination,
            hub_destination=self.paths.hub_destination, hub_tarball=self.hub_tarball,
            thresholds=self.thresholds, enable_cache=self.enable_cache,
            beam_pipeline_args=list(self.beam_args),
            example_gen_beam_args=list(self.example_gen_beam_args))
        if self.paths.metadata_path:
            from tfx import v1 as tfx

            # (Creates the metadata file's directory.)
            kwargs["metadata_connection_config"] = (
                tfx.orchestration.metadata.sqlite_metadata_connection_config(
                    self.paths.metadata_path))
        return kwargs


def run_spec(args: argparse.Namespace, paths: layout.RunPaths, beam_args: Sequence[str] = (),
             prepared: tuple[list, DataConfig] | None = None) -> RunSpec:
    """The run specification of parsed flags; `prepared` = (experiments, data) where the
    runner prepared them itself (data that only remote workers read).

    Raises:
      ValueError: bad flags, presets, paths or destinations, before any work starts.
    """
    experiments, data = prepared or prepare(args)
    layout.check_destinations(paths.push_destination, paths.hub_destination,
                              [e.name for e in experiments])
    return RunSpec(
        pipeline_name=args.pipeline_name, experiments=tuple(experiments), data=data,
        paths=paths,
        thresholds=EvalConfig(min_top1=args.min_top1, max_top1_drop=args.max_top1_drop),
        hub_tarball=args.hub_tarball, enable_cache=not args.no_cache,
        beam_args=tuple(beam_args))


def local_run_spec(args: argparse.Namespace, beam_args: Sequence[str] = ()) -> RunSpec:
    """The run on this machine: paths under --output_dir, the DirectRunner with
    --beam_workers, then any Beam arguments given after `--`."""
    paths = layout.local_paths(args.output_dir, args.pipeline_root, args.push_destination,
                               args.hub_destination)
    spec = run_spec(args, paths, [*direct_beam_args(args.beam_workers), *beam_args])
    return dataclasses.replace(spec, example_gen_beam_args=tuple(
        example_gen_beam_args(args.beam_workers, beam_args)))


def example_gen_beam_args(workers: int, beam_args: Sequence[str] = ()) -> list[str]:
    """S4LExampleGen's DirectRunner mode with several workers: threads of this process
    instead of worker processes, unless the Beam arguments choose a mode themselves.

    Much of its conversion runs outside Python's GIL (Pillow's decoders, TensorFlow's record
    writer, file reads), so threads use the cores without starting processes that import
    TensorFlow again: on 6,600 JPEGs 2 threads took 7.3 s, 2 processes 15.7 s, one worker
    8.5 s (benchmarks/results/example_gen_throughput.md). The other Beam components keep
    processes: their work (TFDV, TFMA, tf.Transform) holds the GIL.
    """
    if workers <= 1 or any(a.startswith("--direct_running_mode") for a in beam_args):
        return []
    return ["--direct_running_mode=multi_threading"]


def direct_beam_args(workers: int = 1) -> list[str]:
    """DirectRunner arguments: in-process for one worker, else `workers` processes.

    One worker is the DirectRunner's default (in_memory, 1 worker), so it needs no argument,
    and with none TFX's Beam components skip packaging TFX itself as an sdist for remote
    workers (dependency_utils.make_beam_dependency_flags: about 1.5 s per component run).
    Multi-processing mode has a history of hangs and dropped records (docs/environment.md);
    tests/runners/test_direct_multiprocess.py checks that it gives the in-process results.
    """
    if workers < 1:
        raise CliError(f"--beam_workers must be >= 1, got {workers}")
    if workers == 1:
        return []
    return ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


