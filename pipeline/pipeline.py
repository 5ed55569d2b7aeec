"""`create_pipeline(...)`: the S4L TFX graph that every runner shares.

S4LExampleGen (or an Importer of already-split examples) -> StatisticsGen -> (ImportSchemaGen)
              -> ExampleValidator
              -> Transform -> per stage: Trainer -> Evaluator (vs the stage's previous
                 blessed model) -> Pusher (serving model) and HubPusher (TF Hub modules)

A stage is one experiment. Several stages share ExampleGen and Transform; a stage trained on
pseudo-labels (`pseudo_labels_from`) reads examples that a BulkInferrer labelled with the
named stage's model, and a warm-started stage (`init_from`) gets that stage's model as the
Trainer's `base_model` (MOAM steps 2 and 3).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from modules import features
from modules.trainer.experiment import Experiment
from pipeline import imported_examples
from pipeline.components.baseline_resolver import PreviousBlessedModelStrategy
from pipeline.components.example_gen.component import S4LExampleGen
from pipeline.components.hub_pusher.component import HubPusher
from pipeline.config import DataConfig, EvalConfig


def eval_config(thresholds: EvalConfig, with_baseline: bool = True) -> tfma.EvalConfig:
    """TFMA top-1/top-5 overall and per class; thresholds on the overall slice only
    (a MetricConfig threshold would apply to every class slice, TFX_NOTES section 3); the
    change threshold only where a baseline model is compared."""
    overall = tfma.SlicingSpec()
    top1_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": thresholds.min_top1}))
    if with_baseline:
        top1_threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -thresholds.max_top1_drop}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default",
                                    label_key=features.LABEL_KEY,
                                    prediction_key="probabilities")],
        slicing_specs=[overall, tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            # Thresholds on the MetricConfig, not the MetricsSpec: TFMA 0.47 keys MetricsSpec
            # thresholds with example_weighted=None, which never matches computed metrics.
            tfma.MetricConfig(
                class_name="SparseCategoricalAccuracy",
                per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                    slicing_specs=[overall], threshold=top1_threshold)]),
            tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy", config='"k": 5'),
            # Rows = true class, columns = predicted class: the run report's confusion matrix.
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])])


def check_stages(experiments: Sequence[Experiment]) -> None:
    """Raises ValueError unless stage names are unique and every dependency comes earlier."""
    seen: set[str] = set()
    for exp in experiments:
        exp.validate()
        if exp.name in seen:
            raise ValueError(f"two stages are named {exp.name!r}")
        for field in ("pseudo_labels_from", "init_from"):
            dependency = getattr(exp, field)
            if dependency and dependency not in seen:
                raise ValueError(f"stage {exp.name!r}: {field}={dependency!r} must name an "
                                 f"earlier stage of the pipeline; earlier: {sorted(seen)}")
        seen.add(exp.name)


def _inside(path: str, directory: str) -> bool:
    path, directory = path.rstrip("/"), directory.rstrip("/")
    return path == directory or path.startswith(directory + "/")


def resolve_hub_destination(push_destination: str, hub_destination: str = "") -> str:
    """Where Hub modules go: `hub_destination`, or `push_destination/hub` when empty."""
    return hub_destination or os.path.join(push_destination, "hub")


def check_destinations(push_destination: str, hub_destination: str,
                       names: Sequence[str]) -> None:
    """Raises ValueError when a stage's Hub versions would land among (or contain) any
    stage's serving versions: both number their version directories."""
    for hub_name in names:
        hub_dir = os.path.join(hub_destination, hub_name)
        for name in names:
            serving_dir = os.path.join(push_destination, name)
            if _inside(hub_dir, serving_dir) or _inside(serving_dir, hub_dir):
                raise ValueError(f"Hub modules of stage {hub_name!r} ({hub_dir}) would mix with "
                                 f"the serving models of stage {name!r} ({serving_dir}); "
                                 "choose another hub destination")


# The user code as import paths into the installed package, for runners whose containers have
# it installed (docker/Dockerfile): nothing is packaged into PIPELINE_ROOT/_wheels, so a gs://
# pipeline root compiles with no cloud access.
PREPROCESSING_FN = "modules.transform.preprocessing.preprocessing_fn"
RUN_FN = "modules.trainer.trainer_module.run_fn"

# (experiment, **standard Trainer kwargs) -> the stage's Trainer, e.g. a Vertex custom job.
TrainerFactory = Callable[..., Any]
# (experiment, candidate model channel) -> the Resolver of the stage's baseline model, or None
# for no baseline (blessing then checks the value threshold only).
BaselineFactory = Callable[[Experiment, Any], Any]


def standard_trainer(experiment: Experiment, **trainer_kwargs: Any) -> tfx.components.Trainer:
    """The default TrainerFactory: tfx.components.Trainer, running where the pipeline runs."""
    del experiment
    return tfx.components.Trainer(**trainer_kwargs)


def previous_blessed_baseline(experiment: Experiment, candidate) -> tfx.dsl.Resolver:
    """The default BaselineFactory: the stage's previous blessed model, never the candidate."""
    del experiment
    return tfx.dsl.Resolver(
        strategy_class=PreviousBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        candidate=candidate)


def pseudo_labeller(examples, model, name: str) -> tfx.components.BulkInferrer:
    """Runs `model`'s serving signature over every split and appends its class logits to each
    example as PSEUDO_LOGITS_KEY (S4L_SPEC section 7.1: the centre crop, upright)."""
    return tfx.components.BulkInferrer(
        examples=examples, model=model,
        data_spec=tfx.proto.DataSpec(example_splits=list(features.SPLITS)),
        output_example_spec=tfx.proto.OutputExampleSpec(output_columns_spec=[
            tfx.proto.OutputColumnsSpec(predict_output=tfx.proto.PredictOutput(
                output_columns=[tfx.proto.PredictOutputCol(
                    output_key="logits", output_column=features.PSEUDO_LOGITS_KEY)]))]),
    ).with_id(f"BulkInferrer.{name}")


def examples_node(data: DataConfig) -> tuple[Any, Any]:
    """(node, its Examples channel) that provide the three splits: S4LExampleGen converting
    the source, or, for already-split examples (`source="examples"`), an Importer
    registering them in place."""
    if data.source == imported_examples.NAME:
        node = imported_examples.importer(data.data_path, data.fingerprint)
        return node, node.outputs["result"]
    node = S4LExampleGen(
        source=data.source, data_path=data.data_path,
        labelled_fraction=float(data.labelled_fraction), label_map_path=data.label_map_path,
        seed=data.seed, exclude_labelled=int(data.exclude_labelled),
        num_shards=data.num_shards, validation_images=data.validation_images,
        num_classes=data.num_classes,
        label_offset=data.label_offset, source_fingerprint=data.fingerprint)
    return node, node.outputs["examples"]


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data: DataConfig,
    experiments: Sequence[Experiment],
    schema_path: str,
    transform_module: str,
    trainer_module: str,
    push_destination: str,
    hub_destination: str = "",
    hub_tarball: bool = False,
    thresholds: EvalConfig | None = None,
    materialize: bool = False,
    enable_cache: bool = True,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | None = None,
    trainer_factory: TrainerFactory | None = None,
    baseline_factory: BaselineFactory | None = None,
    installed_modules: bool = False,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline; validates the stages first so bad settings fail before any work
    starts. Blessed models of stage `name` are pushed to `push_destination/name/<version>`
    (serving) and published as Hub modules to `hub_destination/name/<version>` (default
    `push_destination/hub`; with `hub_tarball` also as .tar.gz).

    Runner hooks: `trainer_factory(experiment, **trainer_kwargs)` builds each stage's Trainer
    (default `standard_trainer`), `baseline_factory(experiment, candidate)` its baseline
    Resolver or None (default `previous_blessed_baseline`); with `installed_modules`
    Transform and the Trainers import PREPROCESSING_FN and RUN_FN from the installed package
    instead of packaging `transform_module` and `trainer_module`."""
    check_stages(experiments)
    hub_destination = resolve_hub_destination(push_destination, hub_destination)
    check_destinations(push_destination, hub_destination, [e.name for e in experiments])
    image_sizes = {(e.image_size, e.resize_size, e.image_fit) for e in experiments}
    if len(image_sizes) != 1:
        raise ValueError(f"all stages must share image_size, resize_size and image_fit (one "
                         f"Transform graph); got {sorted(image_sizes)}")
    image_size, resize_size, image_fit = image_sizes.pop()
    thresholds = thresholds or EvalConfig()
    example_gen, all_examples = examples_node(data)
    statistics_gen = tfx.components.StatisticsGen(examples=all_examples)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=all_examples, schema=schema_gen.outputs["schema"],
        materialize=materialize,
        splits_config=tfx.proto.SplitsConfig(
            analyze=[features.LABELLED_SPLIT],
            transform=list(features.SPLITS) if materialize else []),
        custom_config={"image_size": image_size, "resize_size": resize_size,
                       "image_fit": image_fit},
        **({"preprocessing_fn": PREPROCESSING_FN} if installed_modules
           else {"module_file": transform_module}))
    make_trainer = trainer_factory or standard_trainer
    make_baseline = baseline_factory or previous_blessed_baseline
    trainer_code = {"run_fn": RUN_FN} if installed_modules else {"module_file": trainer_module}
    components = [example_gen, statistics_gen, schema_gen, example_validator, transform]
    trainers: dict[str, tfx.components.Trainer] = {}
    for experiment in experiments:
        name = experiment.name
        examples = all_examples
        if experiment.pseudo_labels_from:
            labeller = pseudo_labeller(
                examples, trainers[experiment.pseudo_labels_from].outputs["model"], name)
            components.append(labeller)
            examples = labeller.outputs["output_examples"]
        base_model = (trainers[experiment.init_from].outputs["model"]
                      if experiment.init_from else None)
        trainer = make_trainer(
            experiment,
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            base_model=base_model,
            train_args=tfx.proto.TrainArgs(
                splits=[features.LABELLED_SPLIT, features.UNLABELLED_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[features.EVAL_SPLIT]),
            custom_config={"experiment": experiment.to_dict()},
            **trainer_code,
        ).with_id(f"Trainer.{name}")
        trainers[name] = trainer
        baseline = make_baseline(experiment, trainer.outputs["model"])
        if baseline is not None:
            components.append(baseline.with_id(f"baseline_resolver.{name}"))
        evaluator = tfx.components.Evaluator(
            examples=all_examples, model=trainer.outputs["model"],
            baseline_model=baseline.outputs["model"] if baseline is not None else None,
            example_splits=[features.EVAL_SPLIT],
            eval_config=eval_config(thresholds, with_baseline=baseline is not None),
        ).with_id(f"Evaluator.{name}")
        pusher = tfx.components.Pusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(
                    base_directory=os.path.join(push_destination, name))),
        ).with_id(f"Pusher.{name}")
        hub_pusher = HubPusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            model_run=trainer.outputs["model_run"], evaluation=evaluator.outputs["evaluation"],
            examples=all_examples, destination=hub_destination,
            model_name=name, tarball=hub_tarball,
        ).with_id(f"HubPusher.{name}")
        components += [trainer, evaluator, pusher, hub_pusher]
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
        enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [])
