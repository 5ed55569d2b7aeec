"""`create_pipeline(...)`: the S4L TFX graph that every runner shares.

S4LExampleGen (or an Importer of already-split examples) -> StatisticsGen -> (ImportSchemaGen)
              -> ExampleValidator -> S4LDataGate (stops on wrong data; its schema goes to
                 every Trainer)
              -> Transform -> per stage: Trainer -> Evaluator (vs the stage's previous
                 blessed model) -> Pusher (serving model) and HubPusher (TF Hub modules)

A stage is one experiment. Several stages share ExampleGen and Transform; a stage trained on
pseudo-labels (`pseudo_labels_from`) reads examples that a BulkInferrer labelled with the
named stage's model, and a warm-started stage (`init_from`) gets that stage's model as the
Trainer's `base_model` (MOAM steps 2 and 3).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from modules import features
from modules.trainer.experiment import Experiment
from pipeline import code_version, layout, presets
from pipeline.components import data_gate, imported_examples, source
from pipeline.components.baseline_resolver import PreviousBlessedModelStrategy
from pipeline.components.data_gate_component import data_gate_node
from pipeline.components.example_gen.component import S4LExampleGen
from pipeline.components.hub_pusher.component import HubPusher
from pipeline.config import DataConfig, EvalConfig


def eval_config(thresholds: EvalConfig, with_baseline: bool = True) -> tfma.EvalConfig:
    """TFMA top-1/top-5 overall and per class; thresholds on the overall slice only
    (a MetricConfig threshold would apply to every class slice, docs/environment.md §3); the
    change threshold only where a baseline model is compared."""
    overall = tfma.SlicingSpec()
    top1_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": thresholds.min_top1}))
    if with_baseline:
        top1_threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -thresholds.max_top1_drop}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=features.SERVING_SIGNATURE,
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


# The user code as import paths into the installed package (containers have it installed,
# docker/Dockerfile): nothing is packaged into PIPELINE_ROOT/_wheels, so a gs:// pipeline root
# compiles with no cloud access, and no execution pip-installs a wheel. The code's version is
# in each component's custom_config (code_version), so an edit re-runs it.
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


def pseudo_labeller(examples, model, name: str,
                    views: str = "upright") -> tfx.components.BulkInferrer:
    """Runs `model` over every split and appends its class logits to each example as
    PSEUDO_LOGITS_KEY: with `views="upright"` its serving signature (docs/original_s4l.md
    §7.1: the centre crop, upright), with "averaged" the logits averaged over the views its
    classifier trained on."""
    return tfx.components.BulkInferrer(
        examples=examples, model=model,
        data_spec=tfx.proto.DataSpec(example_splits=list(features.SPLITS)),
        model_spec=tfx.proto.ModelSpec(
            model_signature_name=[features.PSEUDO_LABEL_SIGNATURES[views]]),
        output_example_spec=tfx.proto.OutputExampleSpec(output_columns_spec=[
            tfx.proto.OutputColumnsSpec(predict_output=tfx.proto.PredictOutput(
                output_columns=[tfx.proto.PredictOutputCol(
                    output_key="logits", output_column=features.PSEUDO_LOGITS_KEY)]))]),
    ).with_id(layout.stage_node_id(layout.BULK_INFERRER, name))


def examples_node(data: DataConfig) -> tuple[Any, Any]:
    """(node, its Examples channel) that provide the three splits: S4LExampleGen converting
    the source, or, for already-split examples (`source="examples"`), an Importer
    registering them in place."""
    if source.source_type(data.source).already_split:
        node = imported_examples.importer(data.data_path, data.fingerprint)
        return node, node.outputs["result"]
    node = S4LExampleGen(
        source=data.source, data_path=data.data_path,
        labelled_fraction=float(data.splits.labelled_fraction),
        label_map_path=data.splits.label_map_path, seed=data.splits.seed,
        exclude_labelled=int(data.splits.exclude_labelled), num_shards=data.splits.num_shards,
        validation_images=data.splits.validation_images,
        num_classes=data.num_classes,
        label_offset=data.label_offset, source_fingerprint=data.fingerprint,
    ).with_id(layout.EXAMPLE_GEN)
    return node, node.outputs["examples"]


def transform_node(examples, schema, experiments: Sequence[Experiment], *,
                   materialize: bool) -> tfx.components.Transform:
    """Transform with the inception preprocessing of the stages' shared image geometry;
    analyses the labelled split, materialises the splits only when asked.

    Transform's own TFDV statistics are off: the pre-transform ones repeat StatisticsGen's,
    and the post-transform ones would summarise every pixel of every image as a numeric
    feature (150,528 values per ImageNet image), a large Beam job nobody reads; StatisticsGen
    and ExampleValidator check the data."""
    image_sizes = {(e.image_size, e.resize_size, e.image_fit) for e in experiments}
    if len(image_sizes) != 1:
        raise ValueError(f"all stages must share image_size, resize_size and image_fit (one "
                         f"Transform graph); got {sorted(image_sizes)}")
    image_size, resize_size, image_fit = image_sizes.pop()
    return tfx.components.Transform(
        examples=examples, schema=schema, materialize=materialize, disable_statistics=True,
        splits_config=tfx.proto.SplitsConfig(
            analyze=[features.LABELLED_SPLIT],
            transform=list(features.SPLITS) if materialize else []),
        custom_config={"image_size": image_size, "resize_size": resize_size,
                       "image_fit": image_fit,
                       code_version.CUSTOM_CONFIG_KEY: code_version.transform_version()},
        preprocessing_fn=PREPROCESSING_FN).with_id(layout.TRANSFORM)


@dataclasses.dataclass(frozen=True)
class _SharedInputs:
    """What every stage's nodes take from the shared part of the graph and the settings."""

    examples: Any
    transform_graph: Any
    schema: Any
    thresholds: EvalConfig
    push_destination: str
    hub_destination: str
    hub_tarball: bool
    make_trainer: TrainerFactory
    make_baseline: BaselineFactory
    trainer_code_version: str


def stage_nodes(experiment: Experiment, shared: _SharedInputs,
                models: dict[str, Any]) -> tuple[list[Any], Any]:
    """(nodes, model channel) of one stage: [BulkInferrer,] Trainer, [baseline Resolver,]
    Evaluator, Pusher and HubPusher. `models` holds the earlier stages' model channels."""
    name = experiment.name
    nodes: list[Any] = []
    examples = shared.examples
    if experiment.pseudo_labels_from:
        labeller = pseudo_labeller(examples, models[experiment.pseudo_labels_from], name,
                                   experiment.pseudo_label_views)
        nodes.append(labeller)
        examples = labeller.outputs["output_examples"]
    trainer = shared.make_trainer(
        experiment, examples=examples, transform_graph=shared.transform_graph,
        schema=shared.schema,
        base_model=models[experiment.init_from] if experiment.init_from else None,
        train_args=tfx.proto.TrainArgs(
            splits=[features.LABELLED_SPLIT, features.UNLABELLED_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[features.EVAL_SPLIT]),
        custom_config={"experiment": experiment.to_dict(),
                       code_version.CUSTOM_CONFIG_KEY: shared.trainer_code_version},
        run_fn=RUN_FN,
    ).with_id(layout.stage_node_id(layout.TRAINER, name))
    model = trainer.outputs["model"]
    baseline = shared.make_baseline(experiment, model)
    if baseline is not None:
        nodes.append(baseline.with_id(layout.stage_node_id(layout.BASELINE_RESOLVER, name)))
    evaluator = tfx.components.Evaluator(
        examples=shared.examples, model=model,
        baseline_model=baseline.outputs["model"] if baseline is not None else None,
        example_splits=[features.EVAL_SPLIT],
        eval_config=eval_config(shared.thresholds, with_baseline=baseline is not None),
    ).with_id(layout.stage_node_id(layout.EVALUATOR, name))
    blessing = evaluator.outputs["blessing"]
    pusher = tfx.components.Pusher(
        model=model, model_blessing=blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(shared.push_destination, name))),
    ).with_id(layout.stage_node_id(layout.PUSHER, name))
    hub_pusher = HubPusher(
        model=model, model_blessing=blessing, model_run=trainer.outputs["model_run"],
        evaluation=evaluator.outputs["evaluation"], examples=shared.examples,
        destination=shared.hub_destination, model_name=name, tarball=shared.hub_tarball,
    ).with_id(layout.stage_node_id(layout.HUB_PUSHER, name))
    return [*nodes, trainer, evaluator, pusher, hub_pusher], model


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data: DataConfig,
    experiments: Sequence[Experiment],
    schema_path: str,
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
    example_gen_beam_args: list[str] | None = None,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline; validates the stages first so bad settings fail before any work
    starts. Blessed models of stage `name` are pushed to `push_destination/name/<version>`
    (serving) and published as Hub modules to `hub_destination/name/<version>` (default
    `push_destination/hub`; with `hub_tarball` also as .tar.gz).

    Runner hooks: `trainer_factory(experiment, **trainer_kwargs)` builds each stage's Trainer
    (default `standard_trainer`), `baseline_factory(experiment, candidate)` its baseline
    Resolver or None (default `previous_blessed_baseline`); `example_gen_beam_args`
    follow the pipeline's Beam arguments for S4LExampleGen alone (later arguments win: the
    Dataflow runner converts files that only this machine reads with the DirectRunner)."""
    presets.check_stages(experiments)
    hub_destination = layout.resolve_hub_destination(push_destination, hub_destination)
    layout.check_destinations(push_destination, hub_destination, [e.name for e in experiments])
    example_gen, all_examples = examples_node(data)
    if example_gen_beam_args and hasattr(example_gen, "with_beam_pipeline_args"):
        example_gen.with_beam_pipeline_args(example_gen_beam_args)
    statistics_gen = tfx.components.StatisticsGen(examples=all_examples)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
    ).with_id(data_gate.VALIDATOR_ID)
    gate = data_gate_node(statistics_gen.outputs["statistics"],
                          example_validator.outputs["anomalies"], schema_gen.outputs["schema"],
                          data.num_classes, data.stop_on_anomalies)
    checked_schema = gate.outputs["checked_schema"]
    transform = transform_node(all_examples, schema_gen.outputs["schema"], experiments,
                               materialize=materialize)
    shared = _SharedInputs(
        examples=all_examples, transform_graph=transform.outputs["transform_graph"],
        schema=checked_schema, thresholds=thresholds or EvalConfig(),
        push_destination=push_destination, hub_destination=hub_destination,
        hub_tarball=hub_tarball, make_trainer=trainer_factory or standard_trainer,
        make_baseline=baseline_factory or previous_blessed_baseline,
        trainer_code_version=code_version.trainer_version())
    components = [example_gen, statistics_gen, schema_gen, example_validator, gate, transform]
    models: dict[str, Any] = {}
    for experiment in experiments:
        nodes, models[experiment.name] = stage_nodes(experiment, shared, models)
        components += nodes
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
        enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [])
