"""Resolver strategy: the latest blessed model of the same Trainer, other than the candidate.

TFX's LatestBlessedModelStrategy resolves the candidate itself once it has been blessed, so
a second run with nothing changed re-runs the Evaluator (candidate vs itself) and pushes the
same model again. Excluding the candidate keeps an unchanged re-run fully cached, and
restricting to the candidate's Trainer keeps one model family's baselines apart from
another's (MOAM stages are separate Trainers).
"""

from __future__ import annotations

import os

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver

_BLESSED = "blessed"
_CURRENT_MODEL_ID = "current_model_id"


def _producer_dir(artifact: types.Artifact) -> str:
    # <pipeline_root>/<component id>/model/<execution id>: the component id identifies it.
    return os.path.dirname(os.path.dirname(artifact.uri.rstrip("/")))


class PreviousBlessedModelStrategy(resolver.ResolverStrategy):
    """Inputs `model`, `model_blessing` (all) and `candidate` (the Trainer's output)."""

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: dict[str, list[types.Artifact]]
                          ) -> dict[str, list[types.Artifact]] | None:
        del store
        result = {key: [] for key in input_dict}
        result["candidate"] = list(input_dict.get("candidate", []))
        if not result["candidate"]:
            return result
        candidate = result["candidate"][0]
        blessings = {
            b.get_int_custom_property(_CURRENT_MODEL_ID): b
            for b in input_dict.get("model_blessing", [])
            if b.get_int_custom_property(_BLESSED) == 1}
        models = sorted(input_dict.get("model", []), key=lambda a: a.id, reverse=True)
        for model in models:
            if (model.id != candidate.id and model.id in blessings
                    and _producer_dir(model) == _producer_dir(candidate)):
                result["model"] = [model]
                result["model_blessing"] = [blessings[model.id]]
                break
        return result
