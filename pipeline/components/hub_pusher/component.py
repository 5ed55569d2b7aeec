"""The HubPusher TFX component (class-based: a ComponentSpec and a custom executor).

Publishes a blessed model's `Format-Hub/{classification,feature_vector}` modules to
`<destination>/<model_name>/<version>/` with a model card; see executor.py for the layout.
Like the TFX Pusher, an unblessed model is not published and the output has `pushed` = 0.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from pipeline.components.hub_pusher import executor


class HubPusherSpec(types.ComponentSpec):
    """Inputs: the model and its blessing; optionally the Trainer's run record, the TFMA
    evaluation and the ExampleGen examples for the model card."""

    PARAMETERS = {
        executor.DESTINATION_KEY: ExecutionParameter(type=str),
        executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
        executor.TARBALL_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun,
                                                 optional=True),
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation,
                                                  optional=True),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples,
                                                optional=True),
    }
    OUTPUTS = {
        executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
    }


class HubPusher(base_component.BaseComponent):
    """Publishes blessed models as versioned TF Hub modules with a model card."""

    SPEC_CLASS = HubPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 destination: str, model_name: str,
                 model_run: types.BaseChannel | None = None,
                 evaluation: types.BaseChannel | None = None,
                 examples: types.BaseChannel | None = None, tarball: bool = False) -> None:
        """Args: the Trainer's `model` (and `model_run`), the Evaluator's `blessing` (and
        `evaluation`), ExampleGen's `examples`; `destination` (a directory or gs:// URI),
        `model_name` (the directory under it) and `tarball` (also write <module>.tar.gz)."""
        spec = HubPusherSpec(
            model=model, model_blessing=model_blessing, model_run=model_run,
            evaluation=evaluation, examples=examples, destination=destination,
            model_name=model_name, tarball=int(tarball),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        super().__init__(spec=spec)
