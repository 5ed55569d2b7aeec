"""PreviousBlessedModelStrategy: the latest blessed model of the candidate's own Trainer."""

from tfx.types import standard_artifacts

from pipeline.components.baseline_resolver import PreviousBlessedModelStrategy


def _model(artifact_id: int, trainer: str = "Trainer.supervised") -> standard_artifacts.Model:
    model = standard_artifacts.Model()
    model.id = artifact_id
    model.uri = f"/root/tfx/{trainer}/model/{artifact_id}"
    return model


def _blessing(model: standard_artifacts.Model, blessed: bool) -> standard_artifacts.ModelBlessing:
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = 1000 + model.id
    blessing.set_int_custom_property("current_model_id", model.id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def _resolve(candidate, models, blessings):
    return PreviousBlessedModelStrategy().resolve_artifacts(
        None, {"candidate": [candidate], "model": models, "model_blessing": blessings})


def test_latest_blessed_model_of_the_same_trainer_other_than_the_candidate():
    old, unblessed, blessed, candidate = _model(1), _model(2), _model(3), _model(5)
    other_trainer = _model(4, "Trainer.vat")
    models = [old, unblessed, blessed, other_trainer, candidate]
    blessings = [_blessing(old, True), _blessing(unblessed, False), _blessing(blessed, True),
                 _blessing(other_trainer, True), _blessing(candidate, True)]
    result = _resolve(candidate, models, blessings)
    assert [m.id for m in result["model"]] == [3]
    assert [b.id for b in result["model_blessing"]] == [1003]
    assert [m.id for m in result["candidate"]] == [5]


def test_no_baseline_when_nothing_else_of_this_trainer_was_blessed():
    candidate, unblessed, other_trainer = _model(5), _model(2), _model(4, "Trainer.vat")
    result = _resolve(candidate, [unblessed, other_trainer, candidate],
                      [_blessing(unblessed, False), _blessing(other_trainer, True),
                       _blessing(candidate, True)])
    assert result["model"] == [] and result["model_blessing"] == []
    assert [m.id for m in result["candidate"]] == [5]
