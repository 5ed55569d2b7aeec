"""The BulkInferrer of a pseudo-labelled stage calls the signature its experiment asks for."""

import json

import pytest
from tfx import v1 as tfx

from modules import features
from pipeline import pipeline


@pytest.mark.parametrize("views, signature", [
    ("upright", features.SERVING_SIGNATURE),
    ("averaged", features.AVERAGED_VIEWS_SIGNATURE),
])
def test_bulk_inferrer_calls_the_signature_of_its_views(views, signature):
    examples = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples)
    model = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)
    node = pipeline.pseudo_labeller(examples, model, "moam_step_2", views)
    # Component specs hold proto properties as JSON text.
    spec = json.loads(node.exec_properties["model_spec"])
    assert spec["model_signature_name"] == [signature]
    assert node.id.endswith("moam_step_2")
