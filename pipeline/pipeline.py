"""`create_pipeline(...)`: the S4L TFX graph that every runner shares.

S4LExampleGen -> StatisticsGen -> (ImportSchemaGen) -> ExampleValidator
              -> Transform -> per stage: Trainer -> Evaluator (vs the stage's previous
                 blessed model) -> Pusher

A stage is one experiment. Several stages share ExampleGen and Transform; a stage trained on
pseudo-labels (`pseudo_labels_from`) reads examples that a BulkInferrer labelled with the
named stage's model, and a warm-started stage (`init_from`) gets that stage's model as the
Trainer's `base_model` (MOAM steps 2 and 3).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from modules import features
from modules.trainer.experiment import Experiment
from pipeline.components.baseline_resolver import PreviousBlessedModelStrategy
from pipeline.components.example_gen.component import S4LExampleGen
from pipeline.config import DataConfig, EvalConfig


def eval_config(thresholds: EvalConfig) -> tfma.EvalConfig:
    """TFMA top-1/top-5 overall and per class; thresholds on the overall slice only
    (a MetricConfig threshold would apply to every class slice, TFX_NOTES section 3)."""
    overall = tfma.SlicingSpec()
    top1_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": thresholds.min_top1}),
        change_threshold=tfma.GenericChangeThreshold(
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
    thresholds: EvalConfig | None = None,
    materialize: bool = False,
    enable_cache: bool = True,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | None = None,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline; validates the stages first so bad settings fail before any work
    starts. Blessed models of stage `name` are pushed to `push_destination/name/<version>`."""
    check_stages(experiments)
    image_sizes = {(e.image_size, e.resize_size) for e in experiments}
    if len(image_sizes) != 1:
        raise ValueError(f"all stages must share image_size and resize_size (one Transform "
                         f"graph); got {sorted(image_sizes)}")
    image_size, resize_size = image_sizes.pop()
    thresholds = thresholds or EvalConfig()
    example_gen = S4LExampleGen(
        source=data.source, data_path=data.data_path,
        labelled_fraction=float(data.labelled_fraction), label_map_path=data.label_map_path,
        seed=data.seed, exclude_labelled=int(data.exclude_labelled),
        num_shards=data.num_shards, num_classes=data.num_classes,
        label_offset=data.label_offset, source_fingerprint=data.fingerprint)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        module_file=transform_module, materialize=materialize,
        splits_config=tfx.proto.SplitsConfig(
            analyze=[features.LABELLED_SPLIT],
            transform=list(features.SPLITS) if materialize else []),
        custom_config={"image_size": image_size, "resize_size": resize_size})
    components = [example_gen, statistics_gen, schema_gen, example_validator, transform]
    trainers: dict[str, tfx.components.Trainer] = {}
    for experiment in experiments:
        name = experiment.name
        examples = example_gen.outputs["examples"]
        if experiment.pseudo_labels_from:
            labeller = pseudo_labeller(
                examples, trainers[experiment.pseudo_labels_from].outputs["model"], name)
            components.append(labeller)
            examples = labeller.outputs["output_examples"]
        base_model = (trainers[experiment.init_from].outputs["model"]
                      if experiment.init_from else None)
        trainer = tfx.components.Trainer(
            module_file=trainer_module,
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            base_model=base_model,
            train_args=tfx.proto.TrainArgs(
                splits=[features.LABELLED_SPLIT, features.UNLABELLED_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[features.EVAL_SPLIT]),
            custom_config={"experiment": experiment.to_dict()},
        ).with_id(f"Trainer.{name}")
        trainers[name] = trainer
        baseline = tfx.dsl.Resolver(
            strategy_class=PreviousBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
            candidate=trainer.outputs["model"],
        ).with_id(f"baseline_resolver.{name}")
        evaluator = tfx.components.Evaluator(
            examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
            baseline_model=baseline.outputs["model"],
            example_splits=[features.EVAL_SPLIT], eval_config=eval_config(thresholds),
        ).with_id(f"Evaluator.{name}")
        pusher = tfx.components.Pusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(
                    base_directory=os.path.join(push_destination, name))),
        ).with_id(f"Pusher.{name}")
        components += [trainer, baseline, evaluator, pusher]
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
        enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [])
